/**
 * Appends chunks to a file with a few positional writes in flight, so decoding the next block overlaps
 * with writing the last one (awaiting every write serialises the two and leaves a core idle).
 */
import type { FileHandle } from 'node:fs/promises';

export class PipelinedWriter {
  private position: number;
  private readonly inFlight: Promise<void>[] = [];
  private failure: unknown;

  constructor(
    private readonly handle: FileHandle,
    startPosition = 0,
    private readonly maxInFlight = 3,
  ) {
    this.position = startPosition;
  }

  /** Queues `chunk`; waits only when too many writes are pending. The chunk must not be reused by the caller. */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    const at = this.position;
    this.position += chunk.length;
    const p = this.writeAll(chunk, at).catch((err: unknown) => {
      this.failure ??= err;
    });
    this.inFlight.push(p);
    if (this.inFlight.length >= this.maxInFlight) await this.inFlight.shift();
    if (this.failure !== undefined) throw this.failure;
  }

  /** Waits for every queued write; throws the first failure. */
  async finish(): Promise<number> {
    await Promise.all(this.inFlight.splice(0));
    if (this.failure !== undefined) throw this.failure;
    return this.position;
  }

  private async writeAll(chunk: Uint8Array, at: number): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const { bytesWritten } = await this.handle.write(chunk, off, chunk.length - off, at + off);
      off += bytesWritten;
    }
  }
}
