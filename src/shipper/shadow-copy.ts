/**
 * Copying committed frames from the WAL into a shadow WAL file: one pass when SQLite's commit point is
 * known (every sync of the shipper passes it), else two (find the last commit, then write up to it).
 * Either way no uncommitted frame is ever written, and memory stays at one chunk whatever the
 * transaction size. Starting, repairing and checking shadow files is shadow-wal.ts.
 *
 * Synchronous on purpose: these run while the shipper holds SQLite's write lock, never held across an
 * await (docs/architecture.md, "No SQLite lock across an await").
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { errnoCode } from '../errors.js';
import {
  WAL_FRAME_HEADER_SIZE,
  WAL_HEADER_SIZE,
  frameAlign,
  frameSize,
  parseWalFrameHeader,
  parseWalHeader,
  type Checksum,
  type WalHeader,
} from '../sqlite/wal-format.js';
import { FrameChain } from './frame-chain.js';

/** Frames read at once: the size of the copy's buffer, and of the repair's. */
export const CHUNK_FRAMES = 256;

/** Fills `buf` from `position`; returns the part read (shorter at end of file). */
export function readAtSync(fd: number, buf: Buffer, position: number): Buffer {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

export function writeAtSync(fd: number, data: Buffer, position: number): void {
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

/**
 * Where the last frame with the header's salts and a commit flag ends, looking at frame headers only
 * (no checksums), from `from` to the end of the file; `from` if there is none. Lets a copy skip the
 * checksums of a big transaction that is still being written.
 */
function lastCommitCandidate(wal: number, header: WalHeader, from: number, buf: Buffer): number {
  const fsize = frameSize(header.pageSize);
  let candidate = from;
  for (let at = from; ;) {
    const chunk = readAtSync(wal, buf, at);
    const frames = Math.floor(chunk.length / fsize);
    for (let i = 0; i < frames; i++) {
      const o = i * fsize;
      if (chunk.readUInt32BE(o + 8) !== header.salt1 || chunk.readUInt32BE(o + 12) !== header.salt2) return candidate;
      if (chunk.readUInt32BE(o + 4) !== 0) candidate = at + o + fsize;
    }
    if (frames * fsize < buf.length) return candidate;
    at += frames * fsize;
  }
}

export interface CopyResult {
  /** Shadow size after the copy (frame-aligned, ends at a commit). */
  shadowSize: number;
  /** Bytes appended. */
  appended: number;
  /** Why copying stopped before the real WAL's end, if it did (a new cycle's salt, a torn frame). */
  stoppedBy?: string;
  /** A committed transaction would have ended past `maxSize`: it was not copied. */
  capped: boolean;
  /** With `verifyLastFrame`: the shadow's last frame is no longer in the WAL (nothing was copied). */
  diverged: boolean;
}

export interface CopyOptions {
  /** fsync the shadow after appending (default true). */
  fsync?: boolean;
  /** The file as it is was already fsynced: skip the fsync when nothing is appended (an idle database). */
  durableAlready?: boolean;
  /** The shadow never grows past this size (see WalShipper: v0.3 segment names hold 8 hex digits). */
  maxSize?: number;
  /** First check that the shadow's last frame is still in the WAL (same cycle only; see `diverged`). */
  verifyLastFrame?: boolean;
  /**
   * SQLite's count of committed frames in the WAL's cycle (mxFrame, from ShipperDb.committedFrames): no
   * frame past it is copied. Frames past it can look committed — a writer killed after writing its
   * commit frame but before publishing it leaves such — and SQLite discards them.
   */
  maxFrames?: number;
}

/**
 * Appends to the shadow file every valid committed frame of the real WAL past the shadow's end, then
 * (unless `fsync: false`) fsyncs the shadow file.
 *
 * Two passes: the first finds the last commit (by frame headers, then by the checksum chain up to it);
 * the second writes exactly the frames up to that commit, from the first pass's buffer when it held them
 * all (the usual few frames), else re-read and re-checked. So no uncommitted frame is ever written, and
 * memory stays at one chunk whatever the transaction size. `fsync: false` skips the fsync: replicas
 * upload only what a later fsync made durable (WalShipper.durablePos).
 */
export function copyToShadow(walPath: string, shadowPath: string, opts: CopyOptions = {}): CopyResult {
  const shadow = openSync(shadowPath, 'r+');
  try {
    const result = appendCommitted(shadow, shadowPath, walPath, opts);
    // On every path, also when nothing was appended (earlier copies may have been made without one, and
    // the caller counts the whole file as durable after this), unless the caller knows it already is.
    if (opts.fsync !== false && !(opts.durableAlready && result.appended === 0)) fsyncSync(shadow);
    return result;
  } finally {
    closeSync(shadow);
  }
}

export function appendCommitted(shadow: number, shadowPath: string, walPath: string, opts: CopyOptions): CopyResult {
  const state = shadowState(shadow, shadowPath);
  const { header } = state;
  const fsize = frameSize(header.pageSize);
  const maxSize = opts.maxSize ?? Infinity;
  const commitLimit = opts.maxFrames === undefined ? Infinity : WAL_HEADER_SIZE + opts.maxFrames * fsize;
  const none = (stoppedBy?: string): CopyResult => ({
    shadowSize: state.size,
    appended: 0,
    capped: false,
    diverged: false,
    ...(stoppedBy ? { stoppedBy } : {}),
  });
  let wal: number;
  try {
    wal = openSync(walPath, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return none('wal missing');
    throw err;
  }
  try {
    if (opts.verifyLastFrame && state.size > WAL_HEADER_SIZE) {
      // Frames up to SQLite's commit point never change within a cycle, so the shadow's last frame must
      // still be in the WAL. If not, the shadow holds frames SQLite discarded: a writer killed after
      // writing its commit frame but before publishing it in the wal-index, whose frames the next
      // writer overwrote (SQLite runs no recovery while other connections keep the -shm).
      const at = state.size - fsize;
      const mine = readAtSync(shadow, Buffer.allocUnsafe(WAL_FRAME_HEADER_SIZE), at);
      const theirs = readAtSync(wal, Buffer.allocUnsafe(WAL_FRAME_HEADER_SIZE), at);
      if (!mine.equals(theirs)) return { ...none('last frame differs'), diverged: true };
    }
    const available = fstatSync(wal).size - state.size;
    if (available < fsize) return none();
    const buf = copyBuffer(Math.max(1, Math.min(CHUNK_FRAMES, Math.ceil(available / fsize))) * fsize);
    const chain = new FrameChain(header, state.size, state.checksum, maxSize, commitLimit);
    // With SQLite's commit point known (every sync of the shipper passes it) no frame past it is read, and
    // each frame is read and checked once; without it, a first pass must find the last commit.
    const written =
      commitLimit !== Infinity
        ? appendInOnePass(shadow, wal, chain, buf, Math.min(commitLimit, state.size + Math.floor(available / fsize) * fsize))
        : appendInTwoPasses(shadow, wal, chain, buf, state.size + available);
    if (written === state.size) return { ...none(chain.stoppedBy), capped: chain.capped };
    return {
      shadowSize: written,
      appended: written - state.size,
      capped: chain.capped,
      diverged: false,
      ...(chain.stoppedBy ? { stoppedBy: chain.stoppedBy } : {}),
    };
  } finally {
    closeSync(wal);
  }
}

/**
 * One read buffer for every copy on this thread (copies are synchronous: never two at once). A fresh
 * one per copy (up to 1 MiB, a hundred copies a second under a steady write load) would be garbage for
 * the collector and keep the process's memory high.
 */
let scratch: Buffer | undefined;
function copyBuffer(bytes: number): Buffer {
  if (!scratch || scratch.length < bytes) scratch = Buffer.allocUnsafeSlow(bytes);
  return scratch.subarray(0, bytes);
}

/**
 * Appends the WAL's frames [chain.end, end) — `end` at or before SQLite's commit point — as they are
 * checked, each whole transaction once its commit frame is read: frames after the last commit frame of
 * a chunk stay in the buffer, ahead of the next read. A transaction larger than the buffer goes on in
 * two passes from its first frame. Returns the shadow's new size (the end of the last commit written).
 */
function appendInOnePass(shadow: number, wal: number, chain: FrameChain, buf: Buffer, end: number): number {
  let written = chain.end;
  while (chain.end < end) {
    const carry = chain.end - written; // buf[0, carry): checked frames of a transaction not committed yet
    if (buf.length - carry < frameSize(chain.pageSize)) {
      chain.rewindToCommitted();
      return appendInTwoPasses(shadow, wal, chain, buf, end);
    }
    const want = Math.min(buf.length - carry, end - chain.end);
    const chunk = readAtSync(wal, buf.subarray(carry, carry + want), chain.end);
    const whole = chunk.subarray(0, Math.floor(chunk.length / frameSize(chain.pageSize)) * frameSize(chain.pageSize));
    const going = chain.accept(whole);
    if (chain.committed > written) {
      writeAtSync(shadow, buf.subarray(0, chain.committed - written), written);
      buf.copyWithin(0, chain.committed - written, chain.end - written);
      written = chain.committed;
    }
    if (!going || whole.length < want) break;
  }
  return written;
}

/**
 * Appends the WAL's committed frames from chain.end on, reading no further than `fileEnd`: a first pass
 * finds the last commit (by frame headers, then by the checksum chain up to it), the second writes
 * exactly the frames up to it, from the first pass's buffer when it held them all (the usual few
 * frames), else re-read and re-checked. Returns the shadow's new size; `chain` tells why it stopped.
 */
function appendInTwoPasses(shadow: number, wal: number, chain: FrameChain, buf: Buffer, fileEnd: number): number {
  const from = chain.end;
  const fromSum = chain.sum;
  // Pass 1: where does the last commit end?
  let scanTo = Infinity;
  if (fileEnd - from > buf.length) {
    scanTo = lastCommitCandidate(wal, chain.header, from, buf);
    if (scanTo === from) return from;
  }
  let held: Buffer | undefined; // pass 1's only chunk, when it covered everything
  for (let at = from; at < scanTo;) {
    const chunk = readAtSync(wal, buf.subarray(0, Math.min(buf.length, scanTo - at)), at);
    const whole = chunk.subarray(0, Math.floor(chunk.length / frameSize(chain.pageSize)) * frameSize(chain.pageSize));
    const going = chain.accept(whole);
    held = at === from ? whole : undefined;
    at += whole.length;
    if (!going || whole.length < buf.length) break;
  }
  const target = chain.committed;
  if (target === from) return from;

  // Pass 2: write [from, target).
  if (held && held.length >= target - from) {
    writeAtSync(shadow, held.subarray(0, target - from), from);
    return target;
  }
  const second = new FrameChain(chain.header, from, fromSum, chain.maxSize, chain.commitLimit);
  for (let at = from; at < target;) {
    const chunk = readAtSync(wal, buf.subarray(0, Math.min(buf.length, target - at)), at);
    const whole = chunk.subarray(0, Math.floor(chunk.length / frameSize(chain.pageSize)) * frameSize(chain.pageSize));
    const going = second.accept(whole);
    const good = second.end - at;
    if (good > 0) writeAtSync(shadow, whole.subarray(0, good), at);
    at += good;
    if (!going || good < whole.length || whole.length === 0) break;
  }
  // Only if the WAL changed between the passes (a restart by someone while we held no read lock): cut
  // back to the last commit this pass saw. A kill right here leaves frames past the last commit, which
  // repairShadow removes at the next start.
  if (second.end > second.committed) ftruncateSync(shadow, second.committed);
  return second.committed;
}
