/**
 * A run of WAL frames checked as SQLite's recovery checks them: the header's salts, the checksum chain
 * from the header (or from the frame before), and where the last commit frame ends. Shared by the copy
 * into the shadow WAL (shadow-copy.ts) and the repair of a shadow file at start-up (shadow-wal.ts).
 */
import { checkFrame, frameSize, wordsOf, type Checksum, type WalHeader } from '../sqlite/wal-format.js';

/** A run of frames checked against a header, continuing a checksum chain. */
export class FrameChain {
  end: number;
  committed: number;
  /** The checksum chain's value at `committed` (where a later pass over the same frames starts from). */
  committedSum: Checksum;
  stoppedBy: string | undefined;
  capped = false;
  /** The checksum chain's value at `end`. */
  sum: Checksum;
  readonly pageSize: number;
  /** A frame off a word boundary is copied here for its checksum (allocated on first need), through `frameBytes`. */
  private frameWords: Uint32Array | undefined;
  private frameBytes: Buffer | undefined;

  constructor(
    readonly header: WalHeader,
    from: number,
    checksum: Checksum,
    readonly maxSize: number,
    /** SQLite's commit point: frames past it are not committed, whatever they look like. */
    readonly commitLimit = Infinity,
  ) {
    this.pageSize = header.pageSize;
    this.end = from;
    this.committed = from;
    this.committedSum = checksum;
    this.sum = checksum;
  }

  /** Goes back to the end of the last commit frame accepted (frames after it are to be checked again). */
  rewindToCommitted(): void {
    this.end = this.committed;
    this.sum = this.committedSum;
  }

  /** Checks the whole frames of `chunk` (which starts at `this.end`); false once the chain stops. */
  accept(chunk: Buffer): boolean {
    const h = this.header;
    const fsize = frameSize(h.pageSize);
    // The frames are read in place as 32-bit words (checkFrame: nothing allocated per frame); a chunk off a
    // word boundary has each frame copied to one that is.
    const words = wordsOf(chunk);
    // The chain after the last accepted frame, and the candidate for the frame being checked.
    let sum = Uint32Array.of(this.sum[0], this.sum[1]);
    let next = new Uint32Array(2);
    let result = true;
    for (let f = 0; f + fsize <= chunk.length; f += fsize) {
      const failed = words !== undefined ? checkFrame(h, chunk, words, f, sum, next) : this.checkAlignedCopy(chunk, f, fsize, sum, next);
      if (failed !== undefined) {
        this.stoppedBy = failed;
        result = false;
        break;
      }
      if (this.end + fsize > this.commitLimit) {
        this.stoppedBy = 'commit point';
        result = false;
        break;
      }
      const commit = chunk.readUInt32BE(f + 4);
      if (commit !== 0 && this.end + fsize > this.maxSize) {
        // Past what a v0.3 segment name can address: stop before this transaction (see maxSize).
        this.capped = true;
        this.stoppedBy = 'offset limit';
        result = false;
        break;
      }
      const passed = next;
      next = sum;
      sum = passed;
      this.end += fsize;
      if (commit !== 0) {
        this.committed = this.end;
        this.committedSum = [sum[0]!, sum[1]!];
      }
    }
    this.sum = [sum[0]!, sum[1]!];
    return result;
  }

  /** checkFrame of the frame at `chunk[at..]`, copied first to a word-aligned buffer of this chain's. */
  private checkAlignedCopy(chunk: Buffer, at: number, fsize: number, prev: Uint32Array, next: Uint32Array): ReturnType<typeof checkFrame> {
    if (this.frameWords === undefined) {
      this.frameWords = new Uint32Array(fsize / 4);
      this.frameBytes = Buffer.from(this.frameWords.buffer);
    }
    chunk.copy(this.frameBytes!, 0, at, at + fsize);
    return checkFrame(this.header, this.frameBytes!, this.frameWords, 0, prev, next);
  }
}
