/**
 * The shipper's hold on the live database: one descriptor of the file and one of its `-shm`
 * (database-file.ts), and three SQLite connections.
 *
 * - `rw` writes Litestream's `_litestream_seq` row (to give the WAL a header, or to restart it right
 *   after our checkpoint) and takes SQLite's write lock whenever the shipper must act on a WAL that
 *   cannot change under it;
 * - `ckpt` runs checkpoints (a connection inside a transaction cannot checkpoint);
 * - `lock` is read-only and holds the long read transaction.
 *
 * The read transaction is what keeps SQLite from restarting the WAL over frames we have not copied: a
 * reader that began while the WAL held unbackfilled frames sits in a read slot ≥ 1, and no connection
 * can restart the WAL (or RESTART/TRUNCATE-checkpoint it) while any such slot is taken. A reader that
 * began on a fully backfilled WAL sits in slot 0 instead, which does not prevent one restart; but it
 * prevents every later backfill, so at most one restart can follow, and only of a WAL whose frames were
 * all backfilled. Hence the rule this class enforces: the read transaction is only ever (re)taken under
 * the write lock, right after every committed frame has been copied (`relockRead`). Then any restart we
 * later observe is of a cycle that ended exactly where our shadow WAL ends.
 *
 * Closing: the read-only connection closes last, so closing can never checkpoint and delete the WAL
 * (SQLite does that when the last connection closes), and a clean restart keeps its generation.
 */
import { accessSync, constants } from 'node:fs';
import { endianness } from 'node:os';
import { basename, dirname } from 'node:path';
import Database from 'better-sqlite3';
import { describeError, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import { walChecksum } from '../sqlite/wal-format.js';
import { DatabaseFile } from './database-file.js';
import { WalFile } from './wal-file.js';

/** How often a wait for the write lock tries again (see beginImmediate). */
const LOCK_POLL_MS = 0.2;
/** Something to Atomics.wait on: a synchronous pause without a busy loop. */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

export interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

/**
 * Fault injection for tests: called at each step of the checkpoint sequence (synchronously, inside it),
 * so a test can commit and checkpoint from another connection exactly there.
 */
export type CheckpointStepHook = (step: string) => void;

/** How long a checkpoint or a new index waits for an application's write transaction. */
export const LOCK_WAIT_MS = 100;

const SEQ_UPSERT = 'INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1';

/** An SQLite error that only means "someone else holds the lock right now". */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return (
    code === 'SQLITE_BUSY' ||
    code === 'SQLITE_LOCKED' ||
    (typeof code === 'string' && code.startsWith('SQLITE_BUSY_')) ||
    /database is locked/i.test(describeError(err))
  );
}

export interface ShipperDbOptions {
  busyTimeoutMs: number;
  /**
   * `journal_size_limit` of the connection whose write restarts the WAL after our checkpoints: SQLite
   * then cuts the WAL file back to this size, so a WAL that grew while readers held it does not stay big.
   */
  journalSizeLimitBytes?: number;
}

export class ShipperDb {
  /** See CheckpointStepHook; undefined outside tests. */
  stepHook: CheckpointStepHook | undefined;
  private writeLocked = false;
  private trusted = false;
  /** The `-wal` as syncs read it (header, frame salts): one descriptor kept across syncs (wal-file.ts). */
  readonly wal: WalFile;
  /** `PRAGMA wal_checkpoint(NOOP)`, prepared once: it runs on every sync of every database. */
  private readonly noop: Database.Statement;
  /** The statements of every checkpoint, prepared on first use (inside the transactions they run in). */
  private passive: Database.Statement | undefined;
  private seqUpsert: Database.Statement | undefined;
  private seqRoot: Database.Statement | undefined;
  private seqValue: Database.Statement | undefined;
  private readSnapshot: Database.Statement | undefined;

  private constructor(
    readonly path: string,
    readonly file: DatabaseFile,
    /** The `-shm`, for walIndexHeader; undefined where SQLite keeps the wal-index in heap memory (no file). */
    private readonly shm: DatabaseFile | undefined,
    private readonly rw: Database.Database,
    private readonly ckpt: Database.Database,
    private readonly lock: Database.Database,
    readonly pageSize: number,
  ) {
    this.wal = new WalFile(`${path}-wal`);
    this.noop = ckpt.prepare('PRAGMA wal_checkpoint(NOOP)');
  }

  /**
   * Opens the file's descriptor, then the connections; converts the database to WAL mode and creates
   * Litestream's tables. Takes no read transaction: the shipper takes it under the write lock after its
   * first copy. Throws a busy SqliteError (see isBusy) while another connection holds a lock too long.
   */
  static open(path: string, opts: ShipperDbOptions): ShipperDb {
    let file: DatabaseFile | undefined;
    let shm: DatabaseFile | undefined;
    let rw: Database.Database | undefined;
    let ckpt: Database.Database | undefined;
    let lock: Database.Database | undefined;
    try {
      file = DatabaseFile.open(path);
      rw = new Database(path, { fileMustExist: true, timeout: opts.busyTimeoutMs });
      const mode = rw.pragma('journal_mode = wal', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') {
        throw new ReplicateError('IO', `opening ${path}: cannot switch the database to WAL mode (journal_mode is ${String(mode)})`);
      }
      rw.pragma('wal_autocheckpoint = 0');
      if (opts.journalSizeLimitBytes !== undefined)
        rw.pragma(`journal_size_limit = ${Math.max(0, Math.floor(opts.journalSizeLimitBytes))}`);
      rw.exec('CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)');
      rw.exec('CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER)');
      const pageSize = Number(rw.pragma('page_size', { simple: true }));
      const version = String(rw.prepare('SELECT sqlite_version()').pluck().get());
      if (!atLeast(version, [3, 51, 0])) {
        // Older SQLite reads an unknown checkpoint mode as PASSIVE: committedFrames() would checkpoint.
        throw new ReplicateError(
          'IO',
          `opening ${path}: replication needs SQLite 3.51 or later (PRAGMA wal_checkpoint(NOOP)); this better-sqlite3 has ${version}`,
        );
      }
      ckpt = new Database(path, { fileMustExist: true, timeout: opts.busyTimeoutMs });
      ckpt.pragma('wal_autocheckpoint = 0');
      lock = new Database(path, { fileMustExist: true, readonly: true, timeout: opts.busyTimeoutMs });
      // From here on `rw` waits for the write lock only in beginImmediate, by polling: no busy handler
      // (reading and setting busy_timeout around every BEGIN IMMEDIATE cost two PRAGMA statements).
      rw.pragma('busy_timeout = 0');
      // Opened once the connections have made the -shm (their reads above map it), kept like the
      // database's: closing a descriptor of the -shm would drop SQLite's locks on it.
      shm = DatabaseFile.openIfExists(`${path}-shm`);
      return new ShipperDb(path, file, shm, rw, ckpt, lock, pageSize);
    } catch (err) {
      for (const c of [rw, ckpt, lock]) c?.close();
      shm?.release();
      file?.release();
      if (err instanceof ReplicateError || isBusy(err)) throw err;
      const msg = describeError(err);
      let hint = /not a database|file is not a database/i.test(msg) ? ' (is it a SQLite database?)' : '';
      if (/unable to open/i.test(msg) && !dirWritable(dirname(path))) {
        hint = ` (its directory ${dirname(path)} is not writable: SQLite must create ${basename(path)}-wal and -shm there)`;
      }
      throw new ReplicateError('IO', `opening database ${path}: ${msg}${hint}`, { cause: err, details: { path } });
    }
  }

  /** Whether the read transaction is open (asked of SQLite, not of a flag). */
  get hasReadLock(): boolean {
    return this.lock.inTransaction;
  }

  /**
   * Whether the read transaction was taken by the rule above (under the write lock, after a full copy).
   * False before the first relock and after an error interrupted the checkpoint sequence: then a WAL
   * restart proves nothing about where the old cycle ended.
   */
  get readLockTrusted(): boolean {
    return this.trusted && this.lock.inTransaction;
  }

  /**
   * BEGIN IMMEDIATE, trying again every LOCK_POLL_MS for up to `waitMs`. SQLite's busy handler sleeps 1,
   * 2, 5, 10… ms between tries and so almost never lands in the short gaps between the commits of an
   * application that writes without pause: measured against such a writer, it missed the lock within
   * 100 ms in more than half of the tries (checkpoints were put off, the WAL grew to 60 MB and every
   * commit of the application got slower), where polling took it in 0.2 ms at the median, every time.
   */
  private beginImmediate(waitMs: number): boolean {
    const deadline = monotonicMs() + Math.max(0, waitMs);
    for (;;) {
      try {
        this.rw.exec('BEGIN IMMEDIATE');
        return true;
      } catch (err) {
        if (!isBusy(err)) throw err;
        if (monotonicMs() >= deadline) return false;
        Atomics.wait(PAUSE, 0, 0, LOCK_POLL_MS);
      }
    }
  }

  /**
   * Runs `fn` holding SQLite's write lock (no transaction can commit, the WAL cannot restart, and no
   * RESTART/TRUNCATE checkpoint can run meanwhile), waiting at most `waitMs` for it. Returns undefined
   * when the lock could not be had (an application transaction is in progress). With `commit`, what `fn`
   * wrote (writeSeq) is committed, else rolled back.
   *
   * `fn` is synchronous: the lock is never held across an await (why: docs/architecture.md, "No SQLite
   * lock across an await").
   */
  tryWithWriteLock<T>(waitMs: number, fn: () => T, opts: { commit?: boolean } = {}): { value: T } | undefined {
    if (this.writeLocked) throw new ReplicateError('IO', 'write lock taken twice');
    if (!this.beginImmediate(waitMs)) return undefined;
    this.writeLocked = true;
    let ok = false;
    try {
      const value = fn();
      ok = true;
      return { value };
    } finally {
      try {
        if (!this.lock.inTransaction) {
          // Only after an error inside fn: never go on without a read transaction (taken while the write
          // lock is still ours), but it proves nothing.
          this.trusted = false;
          this.beginRead();
        }
      } finally {
        // Whatever failed above, the write lock is given back.
        this.writeLocked = false;
        try {
          if (ok && opts.commit) this.rw.exec('COMMIT');
        } finally {
          if (this.rw.inTransaction) this.rw.exec('ROLLBACK');
        }
      }
    }
  }

  /** tryWithWriteLock, retried with backoff for up to `totalMs` (an application's long write). */
  async withWriteLockRetrying(fn: () => void, opts: { stepWaitMs: number; totalMs: number }): Promise<boolean> {
    const until = monotonicMs() + opts.totalMs;
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      if (this.tryWithWriteLock(opts.stepWaitMs, fn)) return true;
      if (monotonicMs() > until) return false;
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /**
   * A WAL shorter than its header (a new database, or one an application TRUNCATE-checkpointed while our
   * read transaction sat in slot 0, i.e. with everything copied): our write gives it a header. Throws a
   * busy error when the write lock could not be had within `waitMs`. Returns the header it found there
   * (undefined after writing one), which a caller may use as its first read of the header.
   */
  ensureWalHeader(waitMs: number): Buffer | undefined {
    const header = this.wal.header();
    if (header) return header;
    if (!this.tryWithWriteLock(waitMs, () => this.writeSeq(), { commit: true })) {
      throw Object.assign(new Error(`database is locked: ${this.wal.path} needs a header`), { code: 'SQLITE_BUSY' });
    }
    return undefined;
  }

  /**
   * Moves the read transaction to the WAL's current end. Only under the write lock and right after every
   * committed frame was copied (see the class comment); the caller vouches for the copy.
   */
  relockRead(): void {
    this.assertWriteLocked('relockRead');
    this.trusted = false;
    this.releaseRead();
    this.beginRead();
    this.trusted = true;
  }

  /** Lets go of the read transaction (for our own checkpoint); only under the write lock. */
  releaseRead(): void {
    this.assertWriteLocked('releaseRead');
    if (this.lock.inTransaction) this.lock.exec('ROLLBACK');
  }

  /**
   * SQLite's count of committed frames in the WAL's current cycle (mxFrame), from `PRAGMA
   * wal_checkpoint(NOOP)` (SQLite 3.51+): no lock taken, nothing written. Undefined when there is no
   * WAL. Frames past it may look committed (a writer killed between writing its commit frame and
   * publishing it leaves such) but are not: SQLite discards them.
   */
  committedFrames(): number | undefined {
    return this.walIndex()?.committed;
  }

  /** SQLite's wal-index: committed frames (mxFrame) and frames backfilled into the database (nBackfill). */
  walIndex(): { committed: number; backfilled: number } | undefined {
    const r = this.noop.get() as CheckpointResult | undefined;
    return r && r.busy === 0 && r.log >= 0 ? { committed: r.log, backfilled: r.checkpointed } : undefined;
  }

  /**
   * SQLite's wal-index header as the -shm holds it: mxFrame (committed frames) and aSalt, the salts of the
   * cycle it names, which SQLite copies byte for byte into the WAL header it writes (bytes 16-24). A
   * writer that restarts the WAL stores the new salts here first and writes the header into the file only
   * afterwards. Read through the descriptor kept for the shipper's lifetime; the header's two copies (at 0
   * and 48) must agree, be initialised (isInit, byte 12) and carry a valid checksum (at 40, in the host's
   * byte order, as every other field): undefined otherwise (unreadable, mid-write, not what SQLite maps).
   * Stable only under the write lock (every writer of the header, recovery included, holds it).
   */
  walIndexHeader(): { committed: number; salts: Buffer } | undefined {
    if (!this.shm) return undefined;
    const hdr = Buffer.allocUnsafe(96);
    if (this.shm.readSync(hdr, 0) < 96) return undefined;
    const first = hdr.subarray(0, 48);
    if (!first.equals(hdr.subarray(48, 96)) || first[12] !== 1) return undefined;
    const be = endianness() === 'BE';
    const [c1, c2] = walChecksum(be, first.subarray(0, 40), [0, 0]);
    const word = (at: number) => (be ? first.readUInt32BE(at) : first.readUInt32LE(at));
    if (c1 !== word(40) || c2 !== word(44)) return undefined;
    return { committed: word(16), salts: Buffer.from(first.subarray(32, 40)) };
  }

  /** Whether every committed frame is in the database file (NOOP's checkpointed == log). */
  fullyBackfilled(): boolean {
    const idx = this.walIndex();
    return idx !== undefined && idx.backfilled === idx.committed;
  }

  /**
   * committedFrames() for the cycle whose header is `header`, without the write lock: the header is read
   * before and after, so the count is of that cycle (and can only be too low, never too high; a WAL
   * cycle never comes back, its salts change at every restart). `before`: a read of the header made
   * earlier by the caller, used as the first one.
   */
  committedFramesOf(header: Buffer, before: Buffer | undefined = this.wal.header()): number | undefined {
    if (!before?.equals(header)) return undefined;
    const n = this.committedFrames();
    return this.wal.header()?.equals(header) ? n : undefined;
  }

  /** A PASSIVE checkpoint (never waits, never restarts the WAL by itself). */
  passiveCheckpoint(): CheckpointResult {
    this.passive ??= this.ckpt.prepare('PRAGMA wal_checkpoint(PASSIVE)');
    return (this.passive.get() as CheckpointResult | undefined) ?? { busy: 1, log: -1, checkpointed: -1 };
  }

  /** Writes Litestream's seq row inside the write-locked transaction (committed with `commit: true`). */
  writeSeq(): void {
    this.assertWriteLocked('writeSeq');
    this.seqUpsert ??= this.rw.prepare(SEQ_UPSERT);
    this.seqUpsert.run();
  }

  /**
   * Where the next writeSeq will write and what: the page of `_litestream_seq` (its root, a leaf while it
   * holds its one row) and the value the row's `seq` will have. Undefined when that value cannot be told
   * (a seq that is not an integer). Under the write lock, so the value read is the one the write changes.
   * (A table grown past one page would write another page than its root: start-up then finds no match.)
   */
  seqWriteTarget(): { page: number; seq: bigint } | undefined {
    this.assertWriteLocked('seqWriteTarget');
    this.seqRoot ??= this.rw.prepare("SELECT rootpage FROM sqlite_schema WHERE type = 'table' AND name = '_litestream_seq'").pluck();
    this.seqValue ??= this.rw.prepare('SELECT seq FROM _litestream_seq WHERE id = 1').pluck().safeIntegers(true);
    const page = Number(this.seqRoot.get());
    if (!Number.isInteger(page) || page < 1) return undefined;
    const rows = this.seqValue.all();
    if (rows.length === 0) return { page, seq: 1n }; // the upsert inserts 1
    return typeof rows[0] === 'bigint' ? { page, seq: rows[0] + 1n } : undefined;
  }

  step(name: string): void {
    this.stepHook?.(name);
  }

  close(): void {
    if (this.lock.inTransaction) this.lock.exec('ROLLBACK');
    // rw and ckpt first: the read-only connection closes last and cannot delete the WAL. The file's
    // descriptor goes last of all (closing it earlier would drop the locks of the connections).
    this.rw.close();
    this.ckpt.close();
    this.lock.close();
    this.shm?.release();
    this.file.release();
    this.wal.close();
  }

  /** BEGIN alone takes no snapshot; the SELECT does. A transaction left without one is rolled back. */
  private beginRead(): void {
    this.lock.exec('BEGIN');
    try {
      this.readSnapshot ??= this.lock.prepare('SELECT COUNT(1) FROM _litestream_seq').pluck();
      this.readSnapshot.get();
    } catch (err) {
      if (this.lock.inTransaction) this.lock.exec('ROLLBACK');
      throw err;
    }
  }

  private assertWriteLocked(what: string): void {
    if (!this.writeLocked) throw new ReplicateError('IO', `${what} outside the write lock`);
  }
}

function atLeast(version: string, min: readonly number[]): boolean {
  const v = version.split('.').map(Number);
  for (let i = 0; i < min.length; i++) {
    if ((v[i] ?? 0) !== min[i]) return (v[i] ?? 0) > min[i]!;
  }
  return true;
}

function dirWritable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
