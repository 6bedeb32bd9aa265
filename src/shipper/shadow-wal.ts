/**
 * The shadow WAL: a copy of the committed frames of one SQLite WAL cycle (header + frames), from which
 * replicas upload WAL segments. Frames are copied only after the same salt and checksum checks SQLite's
 * recovery makes, and only up to the last commit frame; a transaction still being written is left for
 * the next copy.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { errnoCode, ReplicateError } from '../errors.js';
import { tempPathFor } from '../internal/atomic-file.js';
import { DEFAULT_FILE_PERMISSIONS, applyPermissionsToFdSync, mkdirWithPermissionsSync, type FilePermissions } from '../internal/file-permissions.js';
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

/** The first 32 bytes of a file, or undefined when it is missing or shorter. */
export async function readWalHeaderBytes(path: string): Promise<Buffer | undefined> {
  return readWalHeaderBytesSync(path);
}

export function readWalHeaderBytesSync(path: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const b = readAtSync(fd, Buffer.allocUnsafe(WAL_HEADER_SIZE), 0);
    return b.length === WAL_HEADER_SIZE ? b : undefined;
  } finally {
    closeSync(fd);
  }
}

/** Fills `buf` from `position`; returns the part read (shorter at end of file). */
function readAtSync(fd: number, buf: Buffer, position: number): Buffer {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

function writeAtSync(fd: number, data: Buffer, position: number): void {
  let off = 0;
  while (off < data.length) off += writeSync(fd, data, off, data.length - off, position + off);
}

/** Where the checksum chain of a shadow file stands: its header and the checksum of its last frame. */
function shadowState(fd: number, path: string): { header: WalHeader; size: number; checksum: Checksum } {
  const header = parseWalHeader(readAtSync(fd, Buffer.allocUnsafe(WAL_HEADER_SIZE), 0), `shadow wal ${path}`);
  const size = frameAlign(fstatSync(fd).size, header.pageSize);
  let checksum: Checksum = [header.checksum1, header.checksum2];
  if (size > WAL_HEADER_SIZE) {
    const last = parseWalFrameHeader(readAtSync(fd, Buffer.allocUnsafe(WAL_FRAME_HEADER_SIZE), size - frameSize(header.pageSize)));
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
 *
 * Synchronous on purpose: it runs while the shipper holds SQLite's write lock, and an application
 * writing on the same thread (embedded use) must never find the lock held across an await — its busy
 * wait would block the very event loop that is to release the lock. The work is a few page-cache reads
 * and writes.
 */
export function copyToShadow(walPath: string, shadowPath: string, opts: { fsync?: boolean } = {}): CopyResult {
  const shadow = openSync(shadowPath, 'r+');
  let wal: number | undefined;
  try {
    const state = shadowState(shadow, shadowPath);
    const { header } = state;
    const fsize = frameSize(header.pageSize);
    try {
      wal = openSync(walPath, 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return { shadowSize: state.size, appended: 0, stoppedBy: 'wal missing' };
      throw err;
    }
    let checksum = state.checksum;
    let pos = state.size;
    let committed = state.size;
    let stoppedBy: string | undefined;
    // One read buffer per copy, sized to what is there (usually a few frames), at most
    // COPY_CHUNK_FRAMES frames, and reused chunk after chunk.
    const chunkFrames = Math.max(1, Math.min(COPY_CHUNK_FRAMES, Math.ceil((fstatSync(wal).size - pos) / fsize)));
    const readBuf = Buffer.allocUnsafe(chunkFrames * fsize);
    for (;;) {
      const chunk = readAtSync(wal, readBuf, pos);
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
      if (valid > 0) writeAtSync(shadow, chunk.subarray(0, valid * fsize), pos);
      pos += valid * fsize;
      if (stoppedBy !== undefined || frames < chunkFrames) break;
    }
    if (pos > committed) ftruncateSync(shadow, committed); // an open transaction's frames wait for its commit
    if (opts.fsync !== false) fsyncSync(shadow); // also makes earlier unsynced copies durable
    return { shadowSize: committed, appended: committed - state.size, stoppedBy };
  } finally {
    if (wal !== undefined) closeSync(wal);
    closeSync(shadow);
  }
}

/**
 * Starts shadow file `path` with the real WAL's header (checked) and copies its committed frames.
 * Synchronous for the same reason as copyToShadow; the header is written atomically (temp file,
 * fsync, rename, directory fsync) so a crash never leaves a shadow file without its header.
 * `perms`: the database file's mode and owner (MetaDir.permissions); the file has them before it
 * holds a byte, and so does any directory created for it.
 */
export function initShadow(walPath: string, shadowPath: string, headerBytes: Buffer, perms: FilePermissions = DEFAULT_FILE_PERMISSIONS): CopyResult {
  parseWalHeader(headerBytes, `wal ${walPath}`); // throws INVALID_WAL on a bad header checksum
  mkdirWithPermissionsSync(dirname(shadowPath), perms);
  const tmp = tempPathFor(shadowPath);
  const fd = openSync(tmp, 'wx', perms.fileMode);
  try {
    applyPermissionsToFdSync(fd, perms, 'file');
    writeAtSync(fd, headerBytes, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, shadowPath);
  const dir = openSync(dirname(shadowPath), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return copyToShadow(walPath, shadowPath);
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
    const fd = openSync(path, 'r');
    try {
      return readAtSync(fd, Buffer.allocUnsafe(length), position);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new ReplicateError('IO', `reading ${path}: ${(err as Error).message}`, { cause: err });
  }
}
