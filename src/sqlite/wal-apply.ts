/**
 * Applying WAL indexes to a restored database file as their bytes stream past, with the result SQLite's
 * checkpoints would give one index after the other: each committed transaction's pages written in place,
 * a transaction that never commits dropped, pages past a commit's database size discarded, and the file
 * cut to the last commit's size at the end.
 *
 * Every frame is checked by WalScanner (salts, cumulative checksum) before it is accepted, and a
 * transaction's pages are held until its commit frame arrives, so nothing uncommitted or damaged ever
 * reaches the file. Nothing is staged in temporary WAL files: the bytes are decoded once and written
 * once. A transaction is held in memory up to `memoryLimit` bytes; a larger one (a bulk load, a VACUUM)
 * goes on in a spill file beside the output, so memory stays flat whatever the transaction size.
 *
 * Each transaction is written when its commit frame arrives, in order (a page rewritten by two
 * transactions ends with the later version); the writes go to the page cache, and the file is fsynced
 * once at the end of the restore.
 */
import { closeSync, ftruncateSync, openSync, readSync, rmSync, writeSync, writevSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { ReplicateError } from '../errors.js';
import { WalScanner, type WalFrameListener, type WalHeader, type WalScanResult } from './wal-format.js';

const SLAB_BYTES = 1 << 20;
/** Pages per write call (a writev of up to 1 MiB at 4 KiB pages). */
const PAGES_PER_WRITE = 256;

export interface WalApplierOptions {
  pageSize: number;
  /** Where a transaction too large for memory is staged; created only when needed, removed by `close()`. */
  spillPath: string;
  /** Bytes of one transaction's pages held in memory before it spills (default 16 MiB). */
  memoryLimit?: number;
}

export class WalApplier implements WalFrameListener {
  private readonly pageSize: number;
  private readonly memoryLimit: number;
  /**
   * The open transaction: page number -> where its latest version is held. At or above 0: in memory, at
   * byte (slab number * SLAB_BYTES + offset) of `slabs`; below 0: in the spill file, at byte -(value + 1).
   * Numbers, not views of the slabs: the views lived until the commit, long enough to be promoted, and a
   * large transaction's worth of them made the garbage collector's work in the WAL phase.
   */
  private pending = new Map<number, number>();
  private pendingBytes = 0;
  private slabs: Buffer[] = [];
  private slabUsed = SLAB_BYTES;
  private readonly freeSlabs: Buffer[] = [];
  private spillFd: number | undefined;
  private spillEnd = 0;
  /** The open transaction outgrew memory and goes on in the spill file. */
  private spilling = false;
  /** Pages in the file as far as writes and truncations made it. */
  private filePages: number;
  private lastDbSize = -1;
  private where = 'wal';
  private scanner: WalScanner | undefined;

  constructor(
    private readonly db: FileHandle,
    snapshotPages: number,
    private readonly opts: WalApplierOptions,
  ) {
    this.pageSize = opts.pageSize;
    this.memoryLimit = opts.memoryLimit ?? 16 * 1024 * 1024;
    this.filePages = snapshotPages;
  }

  /** Starts the next WAL index (its bytes from offset 0). */
  beginIndex(where: string): void {
    this.where = where;
    this.scanner = new WalScanner(where, this);
  }

  /** The index's next decoded bytes; the transactions they complete are written before it returns. */
  update(chunk: Uint8Array): void {
    this.scanner!.update(chunk);
  }

  /**
   * Ends the current index: what it held and where it stopped being valid. An open transaction at its
   * end never committed and is dropped.
   */
  endIndex(): WalScanResult {
    const result = this.scanner!.result();
    this.scanner = undefined;
    this.dropPending();
    return result;
  }

  /** Cuts the file to the last commit's size. */
  finish(): void {
    if (this.lastDbSize >= 0) ftruncateSync(this.db.fd, this.lastDbSize * this.pageSize);
  }

  /** Removes the spill file; safe to call more than once. */
  close(): void {
    if (this.spillFd !== undefined) {
      closeSync(this.spillFd);
      this.spillFd = undefined;
      rmSync(this.opts.spillPath, { force: true });
    }
  }

  header(h: WalHeader): void {
    if (h.pageSize !== this.pageSize) {
      throw new ReplicateError('INVALID_WAL', `${this.where} has page size ${h.pageSize} but the snapshot has ${this.pageSize}`);
    }
  }

  frame(pgno: number, bytes: Buffer, start: number): void {
    const size = this.pageSize;
    if (!this.spilling && this.pendingBytes + size > this.memoryLimit) this.startSpill();
    if (this.spilling) {
      this.pending.set(pgno, -1 - this.spillPage(bytes, start));
      return;
    }
    if (this.slabUsed + size > SLAB_BYTES) {
      this.slabs.push(this.freeSlabs.pop() ?? Buffer.allocUnsafe(SLAB_BYTES));
      this.slabUsed = 0;
    }
    bytes.copy(this.slabs.at(-1)!, this.slabUsed, start, start + size);
    this.pending.set(pgno, (this.slabs.length - 1) * SLAB_BYTES + this.slabUsed);
    this.slabUsed += size;
    this.pendingBytes += size;
  }

  /** The page held at `where` (see `pending`). */
  private heldPage(where: number): Buffer {
    if (where < 0) return this.readSpilled(-1 - where);
    const at = where % SLAB_BYTES;
    return this.slabs[(where - at) / SLAB_BYTES]!.subarray(at, at + this.pageSize);
  }

  /**
   * The transaction's pages go into the file at once. Synchronous on purpose: these are writes into the
   * page cache (no fsync until the end), most of them a page or a few long, and a thread-pool round trip
   * per write cost far more than the write (measured: a 200 MB restore spent ~400 ms waiting on ~2,000
   * awaited page writes; synchronously they take ~20 ms).
   */
  commit(dbSize: number): void {
    const fd = this.db.fd;
    const pgnos = [...this.pending.keys()].filter((p) => p <= dbSize).sort((x, y) => x - y);
    let i = 0;
    while (i < pgnos.length) {
      // A run of consecutive pages, at most PAGES_PER_WRITE: one positioned writev.
      let j = i + 1;
      while (j < pgnos.length && j - i < PAGES_PER_WRITE && pgnos[j] === pgnos[j - 1]! + 1) j++;
      const bufs: Buffer[] = [];
      for (let k = i; k < j; k++) bufs.push(this.heldPage(this.pending.get(pgnos[k]!)!));
      writeAllvSync(fd, bufs, (pgnos[i]! - 1) * this.pageSize);
      this.filePages = Math.max(this.filePages, pgnos[j - 1]!);
      i = j;
    }
    // A shrink: pages past the new end are gone (they read as zeros if the database grows back later
    // without rewriting them, as after SQLite's own truncating checkpoint).
    if (dbSize < this.filePages) {
      ftruncateSync(fd, dbSize * this.pageSize);
      this.filePages = dbSize;
    }
    this.lastDbSize = dbSize;
    this.dropPending();
  }

  /** Forgets the open transaction (written, or never committed); its memory and spill space are reused. */
  private dropPending(): void {
    this.freeSlabs.push(...this.slabs);
    this.pending = new Map();
    this.pendingBytes = 0;
    this.slabs = [];
    this.slabUsed = SLAB_BYTES;
    this.spilling = false;
    this.spillEnd = 0;
  }

  private startSpill(): void {
    this.spilling = true;
    if (this.spillFd === undefined) this.spillFd = openSync(this.opts.spillPath, 'w+', 0o600);
    // Pages already held move to the spill file, so the transaction lives in one place.
    for (const [pgno, where] of this.pending) if (where >= 0) this.pending.set(pgno, -1 - this.spillPage(this.heldPage(where), 0));
    this.freeSlabs.push(...this.slabs);
    this.slabs = [];
    this.slabUsed = SLAB_BYTES;
    this.pendingBytes = 0;
  }

  /** Appends the page at `bytes[start..]` to the spill file; returns where it went. */
  private spillPage(bytes: Buffer, start: number): number {
    const at = this.spillEnd;
    const size = this.pageSize;
    let done = 0;
    while (done < size) done += writeSync(this.spillFd!, bytes, start + done, size - done, at + done);
    this.spillEnd += size;
    return at;
  }

  private readSpilled(at: number): Buffer {
    const buf = Buffer.allocUnsafe(this.pageSize);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(this.spillFd!, buf, done, buf.length - done, at + done);
      if (n === 0) throw new ReplicateError('IO', `reading ${this.opts.spillPath} at offset ${at + done}: unexpected end of file`);
      done += n;
    }
    return buf;
  }
}

function writeAllvSync(fd: number, bufs: Buffer[], position: number): void {
  const total = bufs.reduce((n, b) => n + b.length, 0);
  let done = writevSync(fd, bufs, position);
  if (done === total) return;
  const all = Buffer.concat(bufs); // a short write is rare: finish it simply
  while (done < total) done += writeSync(fd, all, done, total - done, position + done);
}
