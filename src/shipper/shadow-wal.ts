/**
 * The shadow WAL: a copy of the committed frames of one SQLite WAL cycle (header + frames), from which
 * replicas upload WAL segments. Frames are accepted only after the same salt and checksum checks SQLite's
 * recovery makes, and a shadow file only ever grows by whole committed transactions: an uncommitted
 * frame is never written to it, so a SIGKILL at any instruction leaves a shadow that ends at a commit
 * (and `repairShadow` cuts back anything else a crash or a power cut may have left).
 *
 * This module starts a shadow file (the next index), repairs one at start-up, and checks whether a WAL
 * restarted while stopped is the shadow's next cycle; the copy itself is shadow-copy.ts. Synchronous on
 * purpose, like the copy (see there).
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { errnoCode } from '../errors.js';
import { tempPathFor } from '../internal/atomic-file.js';
import {
  DEFAULT_FILE_PERMISSIONS,
  applyPermissionsToFdSync,
  mkdirWithPermissionsSync,
  type FilePermissions,
} from '../internal/file-permissions.js';
import {
  WAL_HEADER_SIZE,
  WalScanner,
  frameAlign,
  frameSize,
  parseWalFrameHeader,
  parseWalHeader,
  type WalHeader,
} from '../sqlite/wal-format.js';
import { FrameChain } from './frame-chain.js';
import { CHUNK_FRAMES, appendCommitted, readAtSync, writeAtSync, type CopyOptions, type CopyResult } from './shadow-copy.js';

/** The first 32 bytes of a file, or undefined when it is missing or shorter. */
export function readWalHeaderBytesSync(path: string): Buffer | undefined {
  const b = readRange(path, WAL_HEADER_SIZE, 0);
  return b?.length === WAL_HEADER_SIZE ? b : undefined;
}

/** fsyncs a file (a shadow WAL file that is final). */
export function fsyncFileSync(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Starts shadow file `path` with the real WAL's header (checked) and its committed frames. Written
 * atomically (temp file, one fsync, rename, directory fsync), so a crash never leaves a shadow file
 * without its header; the file (and any directory made for it) gets `perms` before the first byte is
 * written: shadow files are page images of the database.
 */
export function initShadow(
  walPath: string,
  shadowPath: string,
  headerBytes: Buffer,
  opts: CopyOptions & { perms?: FilePermissions } = {},
): CopyResult {
  parseWalHeader(headerBytes, `wal ${walPath}`); // throws INVALID_WAL on a bad header checksum
  const perms = opts.perms ?? DEFAULT_FILE_PERMISSIONS;
  mkdirWithPermissionsSync(dirname(shadowPath), perms);
  const tmp = tempPathFor(shadowPath);
  const fd = openSync(tmp, 'wx+', perms.fileMode);
  let copy: CopyResult;
  try {
    try {
      applyPermissionsToFdSync(fd, perms, 'file');
      writeAtSync(fd, headerBytes, 0);
      // The frames go in before the rename: one fsync for the header and them (this runs under the write
      // lock, at every WAL restart).
      copy = appendCommitted(fd, tmp, walPath, { maxSize: opts.maxSize, maxFrames: opts.maxFrames });
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  renameSync(tmp, shadowPath);
  const dir = openSync(dirname(shadowPath), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return copy;
}

export interface ShadowRepair {
  /** Size after the repair: the end of the last valid commit frame (32 for a header-only shadow). */
  size: number;
  /** Bytes cut from the end (frames past the last commit, a torn frame, a partial frame). */
  cut: number;
  header: WalHeader;
}

/**
 * Checks a shadow file's whole checksum chain and cuts it back to its last valid commit, fsynced. A
 * shadow can only end elsewhere after a crash (a SIGKILL of an older version mid-copy, a power cut before
 * an fsync); frames past the last commit must never count as committed. Undefined when the file is
 * missing or its header is unusable.
 */
export function repairShadow(shadowPath: string): ShadowRepair | undefined {
  let fd: number;
  try {
    fd = openSync(shadowPath, 'r+');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const headBytes = readAtSync(fd, Buffer.allocUnsafe(WAL_HEADER_SIZE), 0);
    let header: WalHeader;
    try {
      header = parseWalHeader(headBytes);
    } catch {
      return undefined;
    }
    const fileSize = fstatSync(fd).size;
    const chain = new FrameChain(header, WAL_HEADER_SIZE, [header.checksum1, header.checksum2], Infinity);
    const fsize = frameSize(header.pageSize);
    const buf = Buffer.allocUnsafe(CHUNK_FRAMES * fsize);
    for (let at = WAL_HEADER_SIZE; at < fileSize;) {
      const chunk = readAtSync(fd, buf, at);
      const whole = chunk.subarray(0, Math.floor(chunk.length / fsize) * fsize);
      if (!chain.accept(whole) || whole.length < buf.length) break;
      at += whole.length;
    }
    const size = chain.committed;
    if (fileSize > size) {
      ftruncateSync(fd, size);
      fsyncSync(fd);
    }
    return { size, cut: fileSize - size, header };
  } finally {
    closeSync(fd);
  }
}

function readRange(path: string, length: number, position: number): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return readAtSync(fd, Buffer.allocUnsafe(length), position);
  } finally {
    closeSync(fd);
  }
}

/**
 * The WAL file's first frame (header and page), when the file holds, right after its header `header`, a
 * frame of that header's cycle (its salts, its checksum chain): one SQLite may or may not have committed
 * (see unpublishedRestart in startup.ts, seqWriteBeganCycle in seq-write-note.ts). Else undefined.
 */
export function walFirstFrameOf(walPath: string, header: Buffer): Buffer | undefined {
  let pageSize: number;
  try {
    pageSize = parseWalHeader(header).pageSize;
  } catch {
    return undefined;
  }
  const bytes = readRange(walPath, WAL_HEADER_SIZE + frameSize(pageSize), 0);
  if (!bytes || !bytes.subarray(0, WAL_HEADER_SIZE).equals(header)) return undefined;
  const scanner = new WalScanner();
  scanner.update(bytes);
  return scanner.result().validSize > WAL_HEADER_SIZE ? bytes.subarray(WAL_HEADER_SIZE) : undefined;
}

/**
 * Whether `real` names the WAL cycle right after `old`'s: SQLite adds one to salt-1 on every restart (not
 * the checkpoint sequence: each connection counts its own, so it is not monotonic across them), and the
 * page size stays.
 */
export function isNextCycle(old: WalHeader, real: WalHeader): boolean {
  return real.pageSize === old.pageSize && real.salt1 === (old.salt1 + 1) >>> 0;
}

/**
 * For a WAL that restarted while nobody held its read lock (the replicator was stopped): whether its
 * current cycle is the immediate successor of the shadow's cycle (SQLite adds one to salt-1 on every
 * restart) and the old cycle provably ended exactly where the shadow ends.
 * - 'yes': the frame at the shadow's end belongs to an older cycle than either (the old cycle wrote
 *   nothing past it); or the new cycle has written no frame at all and the file still holds the old
 *   cycle's frames, every one as the shadow has it, ending exactly where the shadow ends (a restart
 *   killed right after its header: any frame the old cycle had past that end would still be there, as
 *   only a commit of the new cycle, which overwrites the first frame, or a TRUNCATE, which drops every
 *   frame, can cut the file).
 * - 'no': not the next cycle, or a frame of the old cycle at the shadow's end (frames committed and never
 *   copied, or at best uncommitted ones: either way nothing to go on from).
 * - 'unknown': the next cycle, but its own frames reached the shadow's end (hiding what the old cycle had
 *   there: a rolled-back spill, or simply a long new cycle), or the file ends there or before (a
 *   journal_size_limit or a TRUNCATE may have cut it). Other evidence may settle it (seq-write-note.ts).
 */
export function oldCycleEndedAtShadow(
  walPath: string,
  shadowPath: string,
  realBytes: Buffer,
  shadowBytes: Buffer,
): 'yes' | 'no' | 'unknown' {
  let real;
  let old;
  try {
    real = parseWalHeader(realBytes);
    old = parseWalHeader(shadowBytes);
  } catch {
    return 'no';
  }
  if (!isNextCycle(old, real)) return 'no';
  let shadowFd: number;
  let walFd: number;
  try {
    shadowFd = openSync(shadowPath, 'r');
  } catch {
    return 'no';
  }
  try {
    const shadowSize = frameAlign(fstatSync(shadowFd).size, old.pageSize);
    try {
      walFd = openSync(walPath, 'r');
    } catch {
      return 'no';
    }
    try {
      const walSize = fstatSync(walFd).size;
      if (walSize < shadowSize) return 'unknown';
      const scanner = new WalScanner();
      const buf = Buffer.allocUnsafe(1 << 20);
      for (let at = 0; ;) {
        const chunk = readAtSync(walFd, buf, at);
        scanner.update(chunk);
        if (scanner.result().stopReason !== undefined || chunk.length < buf.length) break;
        at += chunk.length;
      }
      const fsize = frameSize(old.pageSize);
      const newFrames = scanner.result().validSize > WAL_HEADER_SIZE;
      if (scanner.result().validSize > shadowSize - (shadowSize > WAL_HEADER_SIZE ? fsize : 0)) return 'unknown';
      if (walSize === shadowSize) {
        if (newFrames || shadowSize === WAL_HEADER_SIZE) return 'unknown';
        // Every frame, not only the first and the last: a shadow extended by a tool that copies frames
        // SQLite never published (Litestream, run in between) can end on such a frame's leftover while a
        // later commit overwrote the ones before it.
        const a = Buffer.allocUnsafe(1 << 20);
        const b = Buffer.allocUnsafe(1 << 20);
        for (let at = WAL_HEADER_SIZE; at < shadowSize; at += a.length) {
          const n = Math.min(a.length, shadowSize - at);
          if (!readAtSync(walFd, a.subarray(0, n), at).equals(readAtSync(shadowFd, b.subarray(0, n), at))) return 'unknown';
        }
        return 'yes';
      }
      const next = readAtSync(walFd, Buffer.allocUnsafe(fsize), shadowSize);
      if (next.length < fsize) return 'unknown';
      const fh = parseWalFrameHeader(next);
      if (fh.salt1 === old.salt1 && fh.salt2 === old.salt2) return 'no';
      if (fh.salt1 === real.salt1 && fh.salt2 === real.salt2) return 'unknown';
      return 'yes';
    } finally {
      closeSync(walFd);
    }
  } finally {
    closeSync(shadowFd);
  }
}
