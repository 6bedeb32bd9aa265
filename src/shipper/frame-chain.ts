/**
 * A run of WAL frames checked as SQLite's recovery checks them: the header's salts, the checksum chain
 * from the header (or from the frame before), and where the last commit frame ends. Shared by the copy
 * into the shadow WAL (shadow-copy.ts) and the repair of a shadow file at start-up (shadow-wal.ts).
 */
import { WAL_FRAME_HEADER_SIZE, frameSize, parseWalFrameHeader, walChecksum, type Checksum, type WalHeader } from '../sqlite/wal-format.js';

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
    const fsize = frameSize(this.header.pageSize);
    for (let f = 0; f + fsize <= chunk.length; f += fsize) {
      const frame = chunk.subarray(f, f + fsize);
      const fh = parseWalFrameHeader(frame);
      if (fh.salt1 !== this.header.salt1 || fh.salt2 !== this.header.salt2) {
        this.stoppedBy = 'salt mismatch';
        return false;
      }
      let sum = walChecksum(this.header.bigEndianChecksum, frame.subarray(0, 8), this.sum);
      sum = walChecksum(this.header.bigEndianChecksum, frame.subarray(WAL_FRAME_HEADER_SIZE), sum);
      if (sum[0] !== fh.checksum1 || sum[1] !== fh.checksum2) {
        this.stoppedBy = 'checksum mismatch';
        return false;
      }
      if (this.end + fsize > this.commitLimit) {
        this.stoppedBy = 'commit point';
        return false;
      }
      if (fh.commit !== 0 && this.end + fsize > this.maxSize) {
        // Past what a v0.3 segment name can address: stop before this transaction (see maxSize).
        this.capped = true;
        this.stoppedBy = 'offset limit';
        return false;
      }
      this.sum = sum;
      this.end += fsize;
      if (fh.commit !== 0) {
        this.committed = this.end;
        this.committedSum = sum;
      }
    }
    return true;
  }
}
