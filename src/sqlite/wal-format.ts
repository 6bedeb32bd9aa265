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
 * SQLite's WAL checksum: for every 8 bytes, two 32-bit words a, b (in the byte order the magic names),
 * s0 += a + s1; s1 += b + s0 (wrapping). `data.length` must be a multiple of 8.
 */
export function walChecksum(bigEndian: boolean, data: Uint8Array, seed: Checksum): [number, number] {
  if (data.length % 8 !== 0) throw new RangeError(`wal checksum input must be a multiple of 8 bytes, got ${data.length}`);
  let s0 = seed[0] | 0;
  let s1 = seed[1] | 0;
  const n = data.length >>> 2;
  if (data.byteOffset % 4 === 0) {
    // Fast path: read aligned 32-bit words on this (little-endian) host; swap for big-endian data.
    const words = new Uint32Array(data.buffer, data.byteOffset, n);
    if (bigEndian) {
      for (let i = 0; i < n; i += 2) {
        const x = words[i]!;
        const y = words[i + 1]!;
        const a = (x >>> 24) | ((x >>> 8) & 0xff00) | ((x << 8) & 0xff0000) | (x << 24) | 0;
        const b = (y >>> 24) | ((y >>> 8) & 0xff00) | ((y << 8) & 0xff0000) | (y << 24) | 0;
        s0 = (s0 + a + s1) | 0;
        s1 = (s1 + b + s0) | 0;
      }
    } else {
      for (let i = 0; i < n; i += 2) {
        s0 = (s0 + words[i]! + s1) | 0;
        s1 = (s1 + words[i + 1]! + s0) | 0;
      }
    }
  } else {
    const view = new DataView(data.buffer, data.byteOffset, data.length);
    const le = !bigEndian;
    for (let off = 0; off < data.length; off += 8) {
      s0 = (s0 + view.getUint32(off, le) + s1) | 0;
      s1 = (s1 + view.getUint32(off + 4, le) + s0) | 0;
    }
  }
  return [s0 >>> 0, s1 >>> 0];
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
  /** A valid frame; `page` is only valid during the call. */
  frame(pgno: number, page: Buffer): void;
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
  private frameBuf: Buffer | undefined;
  private frameFill = 0;
  private checksum: Checksum = [0, 0];
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
      this.checksum = [this.header.checksum1, this.header.checksum2];
      this.validSize = WAL_HEADER_SIZE;
      this.frameBuf = Buffer.alloc(frameSize(this.header.pageSize));
    }
    if (this.stopReason !== undefined) return;
    const frame = this.frameBuf!;
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    while (pos < bytes.length) {
      // Whole frames inside the chunk are checked in place; only frames split across chunks are copied.
      if (this.frameFill === 0 && bytes.length - pos >= frame.length) {
        if (!this.acceptFrame(bytes.subarray(pos, pos + frame.length))) return;
        pos += frame.length;
        continue;
      }
      const n = Math.min(frame.length - this.frameFill, bytes.length - pos);
      frame.set(bytes.subarray(pos, pos + n), this.frameFill);
      this.frameFill += n;
      pos += n;
      if (this.frameFill === frame.length) {
        this.frameFill = 0;
        if (!this.acceptFrame(frame)) return;
      }
    }
  }

  private acceptFrame(frame: Buffer): boolean {
    const h = this.header!;
    const fh = parseWalFrameHeader(frame);
    if (fh.pgno === 0) {
      this.stopReason = `invalid page number 0 at offset ${this.validSize}`;
      return false;
    }
    if (fh.salt1 !== h.salt1 || fh.salt2 !== h.salt2) {
      this.stopReason = `salt mismatch at offset ${this.validSize}`;
      return false;
    }
    let sum = walChecksum(h.bigEndianChecksum, frame.subarray(0, 8), this.checksum);
    sum = walChecksum(h.bigEndianChecksum, frame.subarray(WAL_FRAME_HEADER_SIZE), sum);
    if (sum[0] !== fh.checksum1 || sum[1] !== fh.checksum2) {
      this.stopReason = `checksum mismatch at offset ${this.validSize}`;
      return false;
    }
    this.checksum = sum;
    this.frames++;
    this.validSize += frame.length;
    if (this.listener) {
      // The listener keeps what it needs; page maps would only grow with the WAL.
      this.listener.frame(fh.pgno, frame.subarray(WAL_FRAME_HEADER_SIZE));
      if (fh.commit !== 0) {
        this.committedSize = this.validSize;
        this.commitDbSize = fh.commit;
        this.listener.commit(fh.commit);
      }
      return true;
    }
    this.pendingPages.set(fh.pgno, this.validSize - frame.length);
    if (fh.commit !== 0) {
      this.committedSize = this.validSize;
      this.commitDbSize = fh.commit;
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
