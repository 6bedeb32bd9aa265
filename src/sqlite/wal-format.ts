/**
 * The SQLite WAL file format: the 32-byte header, 24-byte frame headers, and the cumulative checksum.
 * https://www.sqlite.org/fileformat2.html#walformat
 */
import { ReplicateError } from '../errors.js';

export const WAL_HEADER_SIZE = 32;
export const WAL_FRAME_HEADER_SIZE = 24;
/** Checksum words are little-endian in the data (the usual magic on x86 and ARM hosts). */
export const WAL_MAGIC_LE = 0x377f0682;
/** Checksum words are big-endian in the data. */
export const WAL_MAGIC_BE = 0x377f0683;
export const WAL_FORMAT_VERSION = 3007000;

export interface WalHeader {
  readonly magic: number;
  /** True when checksum words are read big-endian (magic 0x377f0683). */
  readonly bigEndianChecksum: boolean;
  readonly version: number;
  readonly pageSize: number;
  readonly checkpointSeq: number;
  readonly salt1: number;
  readonly salt2: number;
  readonly checksum1: number;
  readonly checksum2: number;
}

export interface WalFrameHeader {
  readonly pgno: number;
  /** Database size in pages after this commit; non-zero only on a commit frame. */
  readonly commit: number;
  readonly salt1: number;
  readonly salt2: number;
  readonly checksum1: number;
  readonly checksum2: number;
}

export type Checksum = readonly [number, number];

function invalidWal(message: string, details: Record<string, unknown> = {}): ReplicateError {
  return new ReplicateError('INVALID_WAL', message, { details });
}

export function isValidPageSize(pageSize: number): boolean {
  return pageSize >= 512 && pageSize <= 65536 && (pageSize & (pageSize - 1)) === 0;
}

/** Parses a WAL header; throws INVALID_WAL for a bad magic, version, page size or header checksum. */
export function parseWalHeader(buf: Uint8Array, where = 'wal'): WalHeader {
  if (buf.length < WAL_HEADER_SIZE) throw invalidWal(`reading ${where} header: only ${buf.length} of 32 bytes`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, WAL_HEADER_SIZE);
  const magic = b.readUInt32BE(0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) {
    throw invalidWal(`reading ${where} header: invalid wal header magic 0x${magic.toString(16)}`);
  }
  const header: WalHeader = {
    magic,
    bigEndianChecksum: magic === WAL_MAGIC_BE,
    version: b.readUInt32BE(4),
    pageSize: b.readUInt32BE(8),
    checkpointSeq: b.readUInt32BE(12),
    salt1: b.readUInt32BE(16),
    salt2: b.readUInt32BE(20),
    checksum1: b.readUInt32BE(24),
    checksum2: b.readUInt32BE(28),
  };
  if (header.version !== WAL_FORMAT_VERSION) {
    throw invalidWal(`reading ${where} header: unsupported wal format version ${header.version}`);
  }
  if (!isValidPageSize(header.pageSize)) throw invalidWal(`reading ${where} header: invalid page size ${header.pageSize}`);
  const [c1, c2] = walChecksum(header.bigEndianChecksum, b.subarray(0, 24), [0, 0]);
  if (c1 !== header.checksum1 || c2 !== header.checksum2) throw invalidWal(`reading ${where} header: invalid header checksum`);
  return header;
}

export function parseWalFrameHeader(buf: Uint8Array): WalFrameHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, WAL_FRAME_HEADER_SIZE);
  return {
    pgno: b.readUInt32BE(0),
    commit: b.readUInt32BE(4),
    salt1: b.readUInt32BE(8),
    salt2: b.readUInt32BE(12),
    checksum1: b.readUInt32BE(16),
    checksum2: b.readUInt32BE(20),
  };
}

/**
 * SQLite's WAL checksum step over `words[from, to)` (an even count of 32-bit words, in this little-endian
 * host's order; swapped for big-endian data): s0 += a + s1; s1 += b + s0 (wrapping), continued from and
 * written back to `sum`. The one loop behind walChecksum and walFrameChecksum.
 */
function sumWords(bigEndian: boolean, words: Uint32Array, from: number, to: number, sum: Uint32Array): void {
  let s0 = sum[0]! | 0;
  let s1 = sum[1]! | 0;
  if (bigEndian) {
    for (let i = from; i < to; i += 2) {
      const x = words[i]!;
      const y = words[i + 1]!;
      const a = (x >>> 24) | ((x >>> 8) & 0xff00) | ((x << 8) & 0xff0000) | (x << 24) | 0;
      const b = (y >>> 24) | ((y >>> 8) & 0xff00) | ((y << 8) & 0xff0000) | (y << 24) | 0;
      s0 = (s0 + a + s1) | 0;
      s1 = (s1 + b + s0) | 0;
    }
  } else {
    for (let i = from; i < to; i += 2) {
      s0 = (s0 + words[i]! + s1) | 0;
      s1 = (s1 + words[i + 1]! + s0) | 0;
    }
  }
  sum[0] = s0;
  sum[1] = s1;
}

/**
 * SQLite's WAL checksum: for every 8 bytes, two 32-bit words a, b (in the byte order the magic names),
 * s0 += a + s1; s1 += b + s0 (wrapping). `data.length` must be a multiple of 8.
 */
export function walChecksum(bigEndian: boolean, data: Uint8Array, seed: Checksum): [number, number] {
  if (data.length % 8 !== 0) throw new RangeError(`wal checksum input must be a multiple of 8 bytes, got ${data.length}`);
  if (data.byteOffset % 4 === 0) {
    // Fast path: the data read in place as 32-bit words.
    const n = data.length >>> 2;
    const sum = Uint32Array.of(seed[0], seed[1]);
    sumWords(bigEndian, new Uint32Array(data.buffer, data.byteOffset, n), 0, n, sum);
    return [sum[0]!, sum[1]!];
  }
  let s0 = seed[0] | 0;
  let s1 = seed[1] | 0;
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  const le = !bigEndian;
  for (let off = 0; off < data.length; off += 8) {
    s0 = (s0 + view.getUint32(off, le) + s1) | 0;
    s1 = (s1 + view.getUint32(off + 4, le) + s0) | 0;
  }
  return [s0 >>> 0, s1 >>> 0];
}

/**
 * SQLite's WAL checksum of one frame, continued from `sum` (which receives the result): the first 8 bytes
 * of its header, then its page. The frame is read in place as 32-bit words: `words` views the buffer that
 * holds it, and the frame starts at word `at` (so on a 4-byte boundary of that buffer). Unlike walChecksum
 * it allocates nothing, neither views nor a result: a restore or a shadow copy checks every frame, and
 * those short-lived objects (~10,000 per 40 MB of frames) were most of what the garbage collector had to do
 * in a restore's WAL phase.
 */
export function walFrameChecksum(bigEndian: boolean, words: Uint32Array, at: number, pageSize: number, sum: Uint32Array): void {
  sumWords(bigEndian, words, at, at + 2, sum);
  const pageStart = at + WAL_FRAME_HEADER_SIZE / 4;
  sumWords(bigEndian, words, pageStart, pageStart + pageSize / 4, sum);
}

/** `chunk` as 32-bit words from its first byte, when that is on a 4-byte boundary of its buffer; else undefined. */
export function wordsOf(chunk: Uint8Array): Uint32Array | undefined {
  return chunk.byteOffset % 4 === 0 ? new Uint32Array(chunk.buffer, chunk.byteOffset, chunk.byteLength >>> 2) : undefined;
}

/**
 * SQLite's checks of the frame at `bytes[pos..]` (`words` views the same buffer from the same start) against
 * its WAL header: its salts, then its checksum, computed into `next` from the chain's value `prev`. Why
 * the frame fails, or undefined when it passes (`next` then holds the chain after it).
 */
export function checkFrame(
  header: WalHeader,
  bytes: Buffer,
  words: Uint32Array,
  pos: number,
  prev: Uint32Array,
  next: Uint32Array,
): 'salt mismatch' | 'checksum mismatch' | undefined {
  if (bytes.readUInt32BE(pos + 8) !== header.salt1 || bytes.readUInt32BE(pos + 12) !== header.salt2) return 'salt mismatch';
  next.set(prev);
  walFrameChecksum(header.bigEndianChecksum, words, pos >>> 2, header.pageSize, next);
  if (next[0] !== bytes.readUInt32BE(pos + 16) || next[1] !== bytes.readUInt32BE(pos + 20)) return 'checksum mismatch';
  return undefined;
}

export function frameSize(pageSize: number): number {
  return WAL_FRAME_HEADER_SIZE + pageSize;
}

/** Rounds a WAL size down to a whole number of frames (0 below the header). */
export function frameAlign(size: number, pageSize: number): number {
  if (size < WAL_HEADER_SIZE) return 0;
  const f = frameSize(pageSize);
  return WAL_HEADER_SIZE + Math.floor((size - WAL_HEADER_SIZE) / f) * f;
}

/** Size of a WAL file holding `pages` frames. */
export function calcWalSize(pageSize: number, pages: number): number {
  return WAL_HEADER_SIZE + frameSize(pageSize) * pages;
}

/** Where a streamed WAL stopped being valid, if it did. */
export interface WalScanResult {
  header: WalHeader | undefined;
  /** Bytes seen. */
  size: number;
  /** Offset just past the last valid commit frame (the WAL's usable length); 0 if none. */
  committedSize: number;
  /** Offset just past the last frame with a valid salt and checksum. */
  validSize: number;
  /** Number of valid frames. */
  frames: number;
  /** Page count after the last valid commit. */
  commitDbSize: number;
  /** Page number -> offset (in this WAL) of the frame holding its last committed version (empty with a listener). */
  committedPages: ReadonlyMap<number, number>;
  /** Why scanning stopped before the end, if it did (salt or checksum mismatch, partial frame). */
  stopReason: string | undefined;
}

/** Told about each valid frame as a scan accepts it (a restore applies them as they stream past). */
export interface WalFrameListener {
  /** The header was read; throwing here stops the scan with that error. */
  header?(header: WalHeader): void;
  /**
   * A valid frame: its page is `bytes[start, start + pageSize)`, valid only during the call. (A position in
   * the caller's buffer, not a view of it: one object fewer per frame.)
   */
  frame(pgno: number, bytes: Buffer, start: number): void;
  /** The frame just given was a commit: the transaction's pages are final, the database has `dbSize` pages. */
  commit(dbSize: number): void;
}

/**
 * Validates a WAL file as it streams past, exactly as SQLite's recovery does: the header checksum, then
 * for every frame the salts and the cumulative checksum. It never buffers more than one frame.
 */
export class WalScanner {
  private header: WalHeader | undefined;
  private headerBuf = Buffer.alloc(0);
  /** A frame split across chunks is put together here; its words view it for the checksum. */
  private frameBuf: Buffer | undefined;
  private frameWords: Uint32Array | undefined;
  private frameFill = 0;
  /** The checksum chain after the last valid frame, and the candidate for the next one. */
  private checksum = new Uint32Array(2);
  private nextChecksum = new Uint32Array(2);
  private size = 0;
  private validSize = 0;
  private committedSize = 0;
  private commitDbSize = 0;
  private frames = 0;
  private stopReason: string | undefined;
  /** Page number -> offset of its latest frame, for the transaction still open. */
  private readonly pendingPages = new Map<number, number>();
  /** Page number -> offset of its latest committed frame: what a checkpoint copies. */
  private readonly committedPages = new Map<number, number>();

  constructor(
    private readonly where = 'wal',
    private readonly listener?: WalFrameListener,
  ) {}

  /** Feeds the next bytes of the WAL. Throws INVALID_WAL only for a bad header. */
  update(chunk: Uint8Array): void {
    let pos = 0;
    this.size += chunk.length;
    if (this.header === undefined) {
      const need = WAL_HEADER_SIZE - this.headerBuf.length;
      this.headerBuf = Buffer.concat([this.headerBuf, chunk.subarray(0, need)]);
      pos = Math.min(need, chunk.length);
      if (this.headerBuf.length < WAL_HEADER_SIZE) return;
      this.header = parseWalHeader(this.headerBuf, this.where);
      this.listener?.header?.(this.header);
      this.checksum[0] = this.header.checksum1;
      this.checksum[1] = this.header.checksum2;
      this.validSize = WAL_HEADER_SIZE;
      const frameBytes = new ArrayBuffer(frameSize(this.header.pageSize));
      this.frameBuf = Buffer.from(frameBytes);
      this.frameWords = new Uint32Array(frameBytes);
    }
    if (this.stopReason !== undefined) return;
    const frame = this.frameBuf!;
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // The chunk as 32-bit words for the checksums, when it starts on a 4-byte boundary (decoded blocks and
    // read buffers do); frames sit on such boundaries from the start of the WAL (32 + n * (24 + pageSize)).
    const words = wordsOf(chunk);
    while (pos < bytes.length) {
      // Whole frames inside the chunk are checked in place; only frames split across chunks (or off a word
      // boundary) are copied.
      if (this.frameFill === 0 && bytes.length - pos >= frame.length && words !== undefined && pos % 4 === 0) {
        if (!this.acceptFrame(bytes, words, pos)) return;
        pos += frame.length;
        continue;
      }
      const n = Math.min(frame.length - this.frameFill, bytes.length - pos);
      frame.set(bytes.subarray(pos, pos + n), this.frameFill);
      this.frameFill += n;
      pos += n;
      if (this.frameFill === frame.length) {
        this.frameFill = 0;
        if (!this.acceptFrame(frame, this.frameWords!, 0)) return;
      }
    }
  }

  /** Checks the frame at `bytes[pos..]` (`words` views the same buffer from the same start). */
  private acceptFrame(bytes: Buffer, words: Uint32Array, pos: number): boolean {
    const h = this.header!;
    const length = WAL_FRAME_HEADER_SIZE + h.pageSize;
    const pgno = bytes.readUInt32BE(pos);
    if (pgno === 0) {
      this.stopReason = `invalid page number 0 at offset ${this.validSize}`;
      return false;
    }
    const failed = checkFrame(h, bytes, words, pos, this.checksum, this.nextChecksum);
    if (failed !== undefined) {
      this.stopReason = `${failed} at offset ${this.validSize}`;
      return false;
    }
    const passed = this.nextChecksum;
    this.nextChecksum = this.checksum;
    this.checksum = passed;
    this.frames++;
    this.validSize += length;
    const commit = bytes.readUInt32BE(pos + 4);
    if (this.listener) {
      // The listener keeps what it needs; page maps would only grow with the WAL.
      this.listener.frame(pgno, bytes, pos + WAL_FRAME_HEADER_SIZE);
      if (commit !== 0) {
        this.committedSize = this.validSize;
        this.commitDbSize = commit;
        this.listener.commit(commit);
      }
      return true;
    }
    this.pendingPages.set(pgno, this.validSize - length);
    if (commit !== 0) {
      this.committedSize = this.validSize;
      this.commitDbSize = commit;
      for (const [pgno, offset] of this.pendingPages) this.committedPages.set(pgno, offset);
      this.pendingPages.clear();
    }
    return true;
  }

  result(): WalScanResult {
    let stopReason = this.stopReason;
    if (stopReason === undefined && this.header !== undefined && this.frameFill !== 0) {
      stopReason = `partial frame at offset ${this.validSize}`;
    }
    if (this.header === undefined && this.size > 0) stopReason = `short wal header (${this.size} bytes)`;
    return {
      header: this.header,
      size: this.size,
      committedSize: this.committedSize,
      validSize: this.validSize,
      frames: this.frames,
      commitDbSize: this.commitDbSize,
      committedPages: this.committedPages,
      stopReason,
    };
  }
}
