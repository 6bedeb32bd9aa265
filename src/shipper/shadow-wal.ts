/**
 * The shadow WAL: a copy of the committed frames of one SQLite WAL cycle (header + frames), from which
 * replicas upload WAL segments. Frames are copied only after the same salt and checksum checks SQLite's
 * recovery makes, and only up to the last commit frame; a transaction still being written is left for
 * the next copy.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { errnoCode, ReplicateError } from '../errors.js';
import { writeFileAtomic } from '../internal/atomic-file.js';
import {
  WAL_FRAME_HEADER_SIZE,
  WAL_HEADER_SIZE,
  frameAlign,
  frameSize,
  parseWalFrameHeader,
  parseWalHeader,
  walChecksum,
  type Checksum,
  type WalHeader,
} from '../sqlite/wal-format.js';

const COPY_CHUNK_FRAMES = 256;

/** Reads `length` bytes at `position` (into `into` when given); fewer at end of file. */
export async function readAt(handle: FileHandle, length: number, position: number, into?: Buffer): Promise<Buffer> {
  const buf = into && into.length >= length ? into : Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}

/** The first 32 bytes of a file, or undefined when it is missing or shorter. */
export async function readWalHeaderBytes(path: string): Promise<Buffer | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const b = await readAt(handle, WAL_HEADER_SIZE, 0);
    return b.length === WAL_HEADER_SIZE ? b : undefined;
  } finally {
    await handle.close();
  }
}

/** Where the checksum chain of a shadow file stands: its header and the checksum of its last frame. */
async function shadowState(shadow: FileHandle, path: string): Promise<{ header: WalHeader; size: number; checksum: Checksum }> {
  const headerBytes = await readAt(shadow, WAL_HEADER_SIZE, 0);
  const header = parseWalHeader(headerBytes, `shadow wal ${path}`);
  const { size: rawSize } = await shadow.stat();
  const size = frameAlign(rawSize, header.pageSize);
  let checksum: Checksum = [header.checksum1, header.checksum2];
  if (size > WAL_HEADER_SIZE) {
    const last = parseWalFrameHeader(await readAt(shadow, WAL_FRAME_HEADER_SIZE, size - frameSize(header.pageSize)));
    checksum = [last.checksum1, last.checksum2];
  }
  return { header, size, checksum };
}

export interface CopyResult {
  /** Shadow size after the copy (frame-aligned, ends at a commit). */
  shadowSize: number;
  /** Bytes appended. */
  appended: number;
  /** Why copying stopped before the real WAL's end, if it did (a new cycle's salt, a torn frame). */
  stoppedBy?: string;
}

/**
 * Appends to the shadow file every valid committed frame of the real WAL past the shadow's end.
 * Frames are written in place and the file is cut back to the last commit, so memory stays at one chunk
 * whatever the transaction size. `fsync: false` skips the fsync: fine while the frames are still in the
 * real WAL (a power cut then only shortens or damages the shadow's tail, which the next start detects),
 * not before a checkpoint lets SQLite overwrite them.
 */
export async function copyToShadow(walPath: string, shadowPath: string, opts: { fsync?: boolean } = {}): Promise<CopyResult> {
  const shadow = await open(shadowPath, 'r+');
  let wal: FileHandle | undefined;
  try {
    const state = await shadowState(shadow, shadowPath);
    const { header } = state;
    const fsize = frameSize(header.pageSize);
    try {
      wal = await open(walPath, 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return { shadowSize: state.size, appended: 0, stoppedBy: 'wal missing' };
      throw err;
    }
    let checksum = state.checksum;
    let pos = state.size;
    const walSizeHint = (await wal.stat()).size;
    let committed = state.size;
    let stoppedBy: string | undefined;
    // One read buffer per copy, reused chunk after chunk (a busy database is copied hundreds of times
    // a second; fresh buffers each time only feed the garbage collector).
    // Sized to what is there (usually a few frames), at most COPY_CHUNK_FRAMES frames.
    const chunkFrames = Math.max(1, Math.min(COPY_CHUNK_FRAMES, Math.ceil((walSizeHint - pos) / fsize)));
    const readBuf = Buffer.allocUnsafe(chunkFrames * fsize);
    outer: for (;;) {
      const chunk = await readAt(wal, readBuf.length, pos, readBuf);
      const frames = Math.floor(chunk.length / fsize);
      let valid = 0;
      for (let i = 0; i < frames; i++) {
        const frame = chunk.subarray(i * fsize, (i + 1) * fsize);
        const fh = parseWalFrameHeader(frame);
        if (fh.salt1 !== header.salt1 || fh.salt2 !== header.salt2) {
          stoppedBy = 'salt mismatch';
          break;
        }
        let sum = walChecksum(header.bigEndianChecksum, frame.subarray(0, 8), checksum);
        sum = walChecksum(header.bigEndianChecksum, frame.subarray(WAL_FRAME_HEADER_SIZE), sum);
        if (sum[0] !== fh.checksum1 || sum[1] !== fh.checksum2) {
          stoppedBy = 'checksum mismatch';
          break;
        }
        checksum = sum;
        valid++;
        if (fh.commit !== 0) committed = pos + valid * fsize;
      }
      if (valid > 0) await writeAllAt(shadow, chunk.subarray(0, valid * fsize), pos);
      pos += valid * fsize;
      if (stoppedBy !== undefined || frames < chunkFrames) break outer;
    }
    if (pos > committed) await shadow.truncate(committed); // an open transaction's frames wait for its commit
    if (opts.fsync !== false) await shadow.sync(); // also makes earlier unsynced copies durable
    return { shadowSize: committed, appended: committed - state.size, stoppedBy };
  } finally {
    await wal?.close();
    await shadow.close();
  }
}

/** Starts shadow file `path` with the real WAL's header (checked) and copies its committed frames. */
export async function initShadow(walPath: string, shadowPath: string, headerBytes: Buffer): Promise<CopyResult> {
  parseWalHeader(headerBytes, `wal ${walPath}`); // throws INVALID_WAL on a bad header checksum
  // Atomically: a crash never leaves a shadow file without its header (which would end the generation).
  await writeFileAtomic(shadowPath, [headerBytes], { fileMode: 0o644, dirMode: 0o755 });
  return copyToShadow(walPath, shadowPath);
}

async function writeAllAt(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await handle.write(data, off, data.length - off, position + off);
    off += bytesWritten;
  }
}

/**
 * Whether the shadow still mirrors the real WAL: the last frame it holds must be byte-identical at the
 * same offset of the real WAL (Litestream's "wal overwritten by another process" check).
 */
export async function lastFrameMatches(walPath: string, shadowPath: string, shadowSize: number, pageSize: number): Promise<boolean> {
  const fsize = frameSize(pageSize);
  if (shadowSize <= WAL_HEADER_SIZE) return true;
  const at = shadowSize - fsize;
  const [a, b] = await Promise.all([readFileRange(walPath, fsize, at), readFileRange(shadowPath, fsize, at)]);
  return a !== undefined && b !== undefined && a.length === fsize && a.equals(b);
}

async function readFileRange(path: string, length: number, position: number): Promise<Buffer | undefined> {
  try {
    const h = await open(path, 'r');
    try {
      return await readAt(h, length, position);
    } finally {
      await h.close();
    }
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new ReplicateError('IO', `reading ${path}: ${(err as Error).message}`, { cause: err });
  }
}
