/**
 * Read buffers handed out per object and taken back whole once the object's bytes have been used: a
 * restore reads its WAL segments ahead (they wait in a queue, so their buffers outlive the young
 * generation) and, with a fresh buffer per read, left their whole compressed size as old-generation
 * garbage that only a full collection frees (measured: +22 MiB of peak RSS over a 200 MB restore's WAL
 * phase, the largest part of its peak). Reused pieces keep that flat.
 *
 * Buffers are fixed-size pieces: a request is served in pieces of at most PIECE_BYTES, so an object wastes
 * less than one piece. Requests too small to be worth a piece get a buffer of their own (Node's pool
 * serves the tiny ones).
 */

/** Bytes per pooled piece. */
export const PIECE_BYTES = 64 * 1024;
/** Requests below this get their own buffer rather than a piece (a piece would be mostly unused). */
const POOLED_MIN = PIECE_BYTES / 4;

/** Where a backend takes its read buffers from (see OpOptions.readBuffers). */
export interface ReadBuffers {
  /** A buffer of `size` bytes at most PIECE_BYTES long: `min(size, PIECE_BYTES)` bytes. */
  take(size: number): Buffer;
}

export class ReadBufferPool {
  private readonly free: Buffer[] = [];

  /** @param maxFreeBytes pieces beyond this many free bytes are dropped rather than kept */
  constructor(private readonly maxFreeBytes: number) {}

  /** Adds memory the caller is done with (e.g. a decoder's block buffers), cut into pieces. */
  seed(buffers: readonly Buffer[]): void {
    for (const b of buffers) {
      for (let at = 0; at + PIECE_BYTES <= b.length; at += PIECE_BYTES) this.give(b.subarray(at, at + PIECE_BYTES));
    }
  }

  /** The pieces one object's reads take; `release()` gives them back once its bytes are no longer used. */
  lease(): ReadBufferLease {
    return new ReadBufferLease(this);
  }

  /** Pieces held for reuse (for tests and measurement). */
  get freeBytes(): number {
    return this.free.length * PIECE_BYTES;
  }

  /** @internal */
  takePiece(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(PIECE_BYTES);
  }

  /** @internal */
  give(piece: Buffer): void {
    if ((this.free.length + 1) * PIECE_BYTES <= this.maxFreeBytes) this.free.push(piece);
  }
}

export class ReadBufferLease implements ReadBuffers {
  private pieces: Buffer[] = [];

  constructor(private readonly pool: ReadBufferPool) {}

  take(size: number): Buffer {
    const n = Math.min(size, PIECE_BYTES);
    if (n < POOLED_MIN) return Buffer.allocUnsafe(n);
    const piece = this.pool.takePiece();
    this.pieces.push(piece);
    return piece.subarray(0, n);
  }

  /**
   * Every piece taken goes back to the pool: the caller promises that nothing it was given (or that a
   * consumer derived without copying) is used any more.
   */
  release(): void {
    const pieces = this.pieces;
    this.pieces = [];
    for (const p of pieces) this.pool.give(p);
  }
}
