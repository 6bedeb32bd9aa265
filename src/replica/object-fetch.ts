/**
 * Reading stored objects for a restore: one object resumed after a dropped connection, and many objects
 * fetched concurrently but handed over strictly in order, within a memory budget.
 *
 * A long history is thousands of small WAL segments; read one after another, each costs a round trip
 * (a day at `sync-interval: 1s` is up to 86,400 of them). The restore needs them in order, so they are
 * fetched ahead, a few at a time, and held (still compressed) until their turn. What is held is bounded
 * by `budgetBytes` (a read ahead counts at its listed size from its start): a fetch ahead pauses when
 * the budget is spent, and the object whose turn it is waits only for its own backlog (it is being consumed as it arrives), so a single object larger than the
 * budget streams through instead of being held whole. At most twice the budget is held.
 *
 * Objects are immutable once written, so a read that fails midway is opened again and the bytes already
 * delivered are skipped: one dropped connection among a thousand objects costs one re-read, not the
 * restore. Only failures that another try can cure are retried (not a missing object, not an abort).
 */
import { setMaxListeners } from 'node:events';
import type { Readable } from 'node:stream';
import { isReplicateError, isTransientError, ReplicateError, throwIfAborted } from '../errors.js';
import { abortableSleep } from '../internal/abortable-sleep.js';

export interface ObjectSource {
  /** Where the object is, for messages. */
  readonly where: string;
  /** Stored size from the listing, used to account the budget before bytes arrive (0 if unknown). */
  readonly size: number;
  open(signal?: AbortSignal): Promise<Readable>;
}

export interface RetryOptions {
  /** Tries per object after the first (default 4). */
  retries?: number;
  /** First wait before a retry; doubled each time (default 200 ms). */
  backoffMs?: number;
  signal?: AbortSignal;
  /** Called before each retry (for the log). */
  onRetry?: (where: string, attempt: number, err: unknown) => void;
}

/** Whether another try could succeed: connection-level failures, not a missing object or bad input. */
export function isRetryable(err: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return false;
  if (isReplicateError(err)) return isTransientError(err);
  return true; // stream errors from the SDKs and sockets (ECONNRESET, premature close, stalls)
}

/**
 * The object's bytes, opened again after a retryable failure and resumed where the last try stopped
 * (the bytes already yielded are read past, not yielded twice).
 */
export async function* resumableChunks(source: ObjectSource, opts: RetryOptions = {}): AsyncGenerator<Buffer> {
  const retries = opts.retries ?? 4;
  let delivered = 0;
  for (let attempt = 0; ; attempt++) {
    throwIfAborted(opts.signal);
    let stream: Readable | undefined;
    const stop = () => stream?.destroy(new ReplicateError('ABORTED', `reading ${source.where}: aborted`));
    opts.signal?.addEventListener('abort', stop, { once: true });
    try {
      stream = await source.open(opts.signal);
      if (opts.signal?.aborted) stop();
      let skip = delivered;
      for await (const raw of stream) {
        let chunk = raw as Buffer;
        if (skip > 0) {
          if (chunk.length <= skip) {
            skip -= chunk.length;
            continue;
          }
          chunk = chunk.subarray(skip);
          skip = 0;
        }
        delivered += chunk.length;
        yield chunk;
      }
      if (skip > 0) throw new ReplicateError('IO', `reading ${source.where}: the object is shorter than on the previous try`);
      return;
    } catch (err) {
      if (attempt >= retries || !isRetryable(err, opts.signal)) throw err;
      opts.onRetry?.(source.where, attempt + 1, err);
      await abortableSleep((opts.backoffMs ?? 200) * 2 ** attempt, opts.signal); // an abort ends it; the loop's check throws
    } finally {
      opts.signal?.removeEventListener('abort', stop);
      stream?.destroy();
    }
  }
}

export interface PrefetchOptions extends RetryOptions {
  /** Objects read at once (at least 1). */
  concurrency: number;
  /** Compressed bytes held ahead of the consumer (the object being consumed is not counted). */
  budgetBytes: number;
  /** Called for every byte that arrives (once per byte, retries included only once). */
  onBytes?: (n: number) => void;
}

/** One object's place in the queue. */
class Slot {
  readonly chunks: Buffer[] = [];
  held = 0;
  ended = false;
  failure: unknown;
  /** The consumer, waiting for bytes of this object. */
  wakeConsumer: (() => void) | undefined;
  /** The producer, waiting for budget. */
  wakeProducer: (() => void) | undefined;
  head = false;
}

/**
 * Reads `sources` with up to `concurrency` objects in flight and yields each object's bytes in order.
 * Every yielded body must be consumed to its end (or the iteration ended) before the next one is read.
 */
export class OrderedPrefetch {
  private readonly slots: Slot[];
  private next = 0; // next object to start
  private running = 0;
  private held = 0;
  /** Listed bytes of the reads ahead in flight that have not arrived yet. */
  private reserved = 0;
  private closed = false;
  private readonly producers: Promise<void>[] = [];
  /** Reads ahead paused for budget. */
  private readonly waiting = new Set<Slot>();
  /** Ends the reads in flight when the consumer stops early. */
  private readonly stopper = new AbortController();
  private readonly signal: AbortSignal;

  constructor(
    private readonly sources: readonly ObjectSource[],
    private readonly opts: PrefetchOptions,
  ) {
    this.slots = sources.map(() => new Slot());
    this.signal = opts.signal ? AbortSignal.any([opts.signal, this.stopper.signal]) : this.stopper.signal;
    // Every read in flight listens to it (and a backend may add its own listener per read): past Node's
    // default of 10, a restore with -parallelism 8 printed a MaxListenersExceededWarning, not a leak.
    setMaxListeners(Math.max(10, 4 * opts.concurrency + 4), this.signal);
  }

  /** Starts reading ahead before the first body is asked for (e.g. while the snapshot decodes). */
  start(): void {
    this.startMore();
  }

  /** The objects' bodies, in order. */
  async *bodies(): AsyncGenerator<{ source: ObjectSource; body: AsyncGenerator<Buffer> }> {
    try {
      for (let i = 0; i < this.sources.length; i++) {
        const slot = this.slots[i]!;
        slot.head = true;
        slot.wakeProducer?.();
        this.startMore();
        yield { source: this.sources[i]!, body: this.drain(slot) };
      }
    } finally {
      await this.close();
    }
  }

  /** Stops every read still in flight. */
  async close(): Promise<void> {
    this.closed = true;
    this.stopper.abort();
    for (const s of this.waiting) s.wakeProducer?.();
    for (const s of this.slots) s.chunks.length = 0;
    await Promise.allSettled(this.producers);
  }

  private async *drain(slot: Slot): AsyncGenerator<Buffer> {
    for (;;) {
      const chunk = slot.chunks.shift();
      if (chunk) {
        slot.held -= chunk.length;
        this.held -= chunk.length;
        this.wakeWaiting();
        this.startMore();
        yield chunk;
        continue;
      }
      if (slot.failure !== undefined) throw slot.failure as Error; // what the read threw, passed on as it was
      if (slot.ended) return;
      await new Promise<void>((resolve) => (slot.wakeConsumer = resolve));
      slot.wakeConsumer = undefined;
    }
  }

  /** Lets paused reads ahead go on once the budget has room again (the earliest first: it is needed first). */
  private wakeWaiting(): void {
    for (const s of this.waiting) s.wakeProducer?.(); // each checks its own condition again
  }

  /** Starts reads ahead while there is room in both the concurrency and the budget. */
  private startMore(): void {
    while (!this.closed && this.next < this.sources.length && this.running < Math.max(1, this.opts.concurrency)) {
      const slot = this.slots[this.next]!;
      // A read ahead counts against the budget from its start, at its listed size: a backend may deliver
      // a whole object as one chunk (the file client reads small ones whole), and eight of them started
      // at once held three times the budget. One read ahead may start on an empty budget whatever its size.
      const want = Math.min(this.sources[this.next]!.size, this.opts.budgetBytes);
      if (
        !slot.head &&
        (this.held + this.reserved >= this.opts.budgetBytes ||
          (this.reserved > 0 && this.held + this.reserved + want > this.opts.budgetBytes))
      )
        return;
      const i = this.next++;
      this.running++;
      this.producers.push(this.produce(i));
    }
  }

  private async produce(i: number): Promise<void> {
    const slot = this.slots[i]!;
    const source = this.sources[i]!;
    let reserved = Math.min(source.size, this.opts.budgetBytes);
    this.reserved += reserved;
    try {
      for await (const chunk of resumableChunks(source, { ...this.opts, signal: this.signal })) {
        if (this.closed) return;
        const arrived = Math.min(reserved, chunk.length);
        reserved -= arrived;
        this.reserved -= arrived;
        this.opts.onBytes?.(chunk.length);
        // A chunk held for later that is a small view of a much larger buffer (a file stream reads 64 KiB
        // at a time, a small segment is a few KiB of it) is copied, so the budget counts what is held.
        slot.chunks.push(!slot.head && chunk.buffer.byteLength > 2 * chunk.length ? Buffer.from(chunk) : chunk);
        slot.held += chunk.length;
        this.held += chunk.length;
        slot.wakeConsumer?.();
        // A read ahead waits while the budget is spent; the object being consumed waits only for its
        // own backlog (it is drained as it arrives, so a huge object streams instead of piling up).
        while (!this.closed && (slot.head ? slot.held > this.opts.budgetBytes : this.held > this.opts.budgetBytes)) {
          this.waiting.add(slot);
          await new Promise<void>((resolve) => (slot.wakeProducer = resolve));
          slot.wakeProducer = undefined;
          this.waiting.delete(slot);
        }
      }
      slot.ended = true;
    } catch (err) {
      slot.failure = err;
    } finally {
      this.reserved -= reserved;
      this.running--;
      slot.wakeConsumer?.();
      this.startMore();
    }
  }
}
