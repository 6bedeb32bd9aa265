/**
 * Runs async jobs one at a time, in the order they were queued: each starts once every job before it has
 * settled, whatever its outcome (a failed sync must not stop the next one from running). The caller gets
 * each job's own result or rejection; the queue itself never rejects.
 *
 * The shipper runs its database work through one (syncs, opening, closing, snapshot reads: no two may
 * interleave on its connections), each replica its uploads and its retention runs.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.tail.then(job);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Settles once every job queued so far has settled. */
  async idle(): Promise<void> {
    await this.tail;
  }
}
