/**
 * A few spare buffers kept for the next user instead of left to the garbage collector. A buffer is
 * taken (it then belongs to the taker alone) and given back when the taker is done with it; a buffer
 * never given back (an abandoned stream) is simply collected. So two users never share one, and what
 * is kept is at most `maxSpares` buffers of at most `maxBytes` each.
 *
 * Why: large buffers allocated per use (4 MiB LZ4 blocks, several a second) stay alive until a
 * collection, and glibc keeps the memory they were freed from, so the peak RSS follows the garbage, not
 * what is in use.
 */
export class SpareBuffers {
  private readonly spares: Buffer[] = [];

  constructor(
    private readonly maxSpares: number,
    private readonly maxBytes: number,
  ) {}

  /**
   * A buffer of at least `size` bytes: the smallest spare that fits, else a new one of `allocate`
   * bytes (at least `size`; a bigger one serves larger requests later).
   */
  take(size: number, allocate = size): Buffer {
    let best = -1;
    for (let i = 0; i < this.spares.length; i++) {
      const b = this.spares[i]!;
      if (b.length >= size && (best < 0 || b.length < this.spares[best]!.length)) best = i;
    }
    if (best >= 0) return this.spares.splice(best, 1)[0]!;
    return Buffer.allocUnsafe(Math.max(size, allocate));
  }

  /** Gives back a buffer taken with `take` (the whole buffer, not a view of it); the caller must not use it after. */
  give(buffer: Buffer): void {
    if (buffer.length > this.maxBytes || this.spares.includes(buffer)) return;
    if (this.spares.length < this.maxSpares) {
      this.spares.push(buffer);
      return;
    }
    // Full: keep the larger ones (they serve every request).
    let smallest = 0;
    for (let i = 1; i < this.spares.length; i++) if (this.spares[i]!.length < this.spares[smallest]!.length) smallest = i;
    if (this.spares[smallest]!.length < buffer.length) this.spares[smallest] = buffer;
  }

  /** Bytes kept (for tests). */
  get keptBytes(): number {
    return this.spares.reduce((n, b) => n + b.length, 0);
  }
}
