/**
 * Exact byte counts out of a chunked stream: the LZ4 frame decoders read a frame as headers, lengths and
 * blocks of known size, whatever chunks the source (a file, an HTTP body) delivers. Separate from the
 * frame format because it knows nothing of it.
 */

/** Reads exact byte counts out of a chunked stream without copying more than needed. */
export class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;
  private readonly iterator: AsyncIterator<Uint8Array>;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  /** Fills the buffer to at least n bytes, or to end of stream. Returns how many bytes are available. */
  private async fill(n: number): Promise<number> {
    while (this.buffered < n && !this.done) {
      const next = await this.iterator.next();
      if (next.done) {
        this.done = true;
        break;
      }
      const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      if (chunk.length > 0) {
        this.chunks.push(chunk);
        this.buffered += chunk.length;
      }
    }
    return this.buffered;
  }

  /**
   * Exactly n bytes, or fewer only at end of stream (the caller decides whether that is an error).
   * Bytes that span chunks are copied into `scratch` when it is big enough (the caller must be done
   * with them before the next read), else into a new buffer.
   */
  async read(n: number, scratch?: Buffer): Promise<Buffer> {
    const available = await this.fill(n);
    const take = Math.min(n, available);
    if (take === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (first.length >= take) {
      const out = first.subarray(0, take);
      if (first.length === take) this.chunks.shift();
      else this.chunks[0] = first.subarray(take);
      this.buffered -= take;
      return out;
    }
    const out = scratch && scratch.length >= take ? scratch.subarray(0, take) : Buffer.allocUnsafe(take);
    this.consumeInto(out, 0);
    return out;
  }

  /**
   * The next 1 to `max` bytes as they are buffered (a view of one chunk, never a copy), or an empty
   * buffer at end of stream. For a caller that copies a long run into its own memory piece by piece:
   * it holds no more than one chunk of the source at a time, where `read` collects all of them first.
   */
  async readUpTo(max: number): Promise<Buffer> {
    if ((await this.fill(1)) === 0 || max <= 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    const take = Math.min(max, first.length);
    if (take === first.length) this.chunks.shift();
    else this.chunks[0] = first.subarray(take);
    this.buffered -= take;
    return first.subarray(0, take);
  }

  /** Moves the next `out.length - at` buffered bytes into `out` from offset `at`. */
  private consumeInto(out: Buffer, at: number): void {
    let pos = at;
    while (pos < out.length) {
      const c = this.chunks[0]!;
      const n = Math.min(c.length, out.length - pos);
      c.copy(out, pos, 0, n);
      pos += n;
      if (n === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(n);
    }
    this.buffered -= out.length - at;
  }

  /**
   * n bytes copied after `prefix` into one new buffer (fewer at end of stream): the block codec wants a
   * size prefix, and this builds it with a single copy of the data.
   */
  async readPrefixed(n: number, prefix: Buffer): Promise<Buffer> {
    const available = await this.fill(n);
    const take = Math.min(n, available);
    const out = Buffer.allocUnsafe(prefix.length + take);
    prefix.copy(out, 0);
    this.consumeInto(out, prefix.length);
    return out;
  }

  async atEnd(): Promise<boolean> {
    return (await this.fill(1)) === 0;
  }

  /** Stops reading the source (e.g. closes the file) when the consumer quits early. */
  async close(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.iterator.return?.();
    }
  }
}
