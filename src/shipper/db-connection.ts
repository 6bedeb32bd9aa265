/**
 * The shipper's SQLite connections to the live database.
 *
 * - `rw` writes Litestream's `_litestream_seq` row (to force WAL frames) and takes the write lock around
 *   checkpoints;
 * - `ckpt` runs checkpoints (a connection inside a transaction cannot checkpoint);
 * - `lock` is read-only and holds a long read transaction, which keeps SQLite from restarting the WAL
 *   (and so overwriting frames we have not copied) behind our back — Litestream's technique. Because it
 *   is read-only and closed last, closing never checkpoints and deletes the WAL (SQLite does that when
 *   the last connection closes), so a clean restart finds the WAL and keeps its generation.
 */
import { accessSync, constants } from 'node:fs';
import { basename, dirname } from 'node:path';
import Database from 'better-sqlite3';
import { describeError, ReplicateError } from '../errors.js';

export interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

const SEQ_UPSERT = 'INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1';

/**
 * Fault injection for tests: called at each step of the checkpoint sequence (synchronously, inside it),
 * so a test can commit and checkpoint from another connection exactly there.
 */
export type CheckpointStepHook = (step: string) => void;

export class ShipperDb {
  /** See CheckpointStepHook; undefined outside tests. */
  stepHook: CheckpointStepHook | undefined;

  private constructor(
    readonly path: string,
    private readonly rw: Database.Database,
    private readonly ckpt: Database.Database,
    private readonly lock: Database.Database,
    readonly pageSize: number,
  ) {}

  /** Opens the database, converts it to WAL mode, creates Litestream's tables, takes the read lock. */
  static open(path: string, opts: { busyTimeoutMs: number }): ShipperDb {
    let rw: Database.Database | undefined;
    let ckpt: Database.Database | undefined;
    let lock: Database.Database | undefined;
    try {
      rw = new Database(path, { fileMustExist: true, timeout: opts.busyTimeoutMs });
      const mode = rw.pragma('journal_mode = wal', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') {
        throw new ReplicateError('IO', `opening ${path}: cannot switch the database to WAL mode (journal_mode is ${mode})`);
      }
      rw.pragma('wal_autocheckpoint = 0');
      rw.exec('CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)');
      rw.exec('CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER)');
      const pageSize = Number(rw.pragma('page_size', { simple: true }));
      ckpt = new Database(path, { fileMustExist: true, timeout: opts.busyTimeoutMs });
      ckpt.pragma('wal_autocheckpoint = 0');
      lock = new Database(path, { fileMustExist: true, readonly: true, timeout: opts.busyTimeoutMs });
      const db = new ShipperDb(path, rw, ckpt, lock, pageSize);
      db.acquireReadLock();
      return db;
    } catch (err) {
      for (const c of [rw, ckpt, lock]) c?.close();
      if (err instanceof ReplicateError) throw err;
      const msg = describeError(err);
      let hint = /not a database|file is not a database/i.test(msg) ? ' (is it a SQLite database?)' : '';
      if (/unable to open/i.test(msg) && !dirWritable(dirname(path))) {
        hint = ` (its directory ${dirname(path)} is not writable: SQLite must create ${basename(path)}-wal and -shm there)`;
      }
      throw new ReplicateError('IO', `opening database ${path}: ${msg}${hint}`, { cause: err, details: { path } });
    }
  }

  /** Idempotent; asks SQLite (not a flag) whether the read transaction is still open. */
  acquireReadLock(): void {
    if (this.lock.inTransaction) return;
    this.lock.exec('BEGIN');
    this.lock.prepare('SELECT COUNT(1) FROM _litestream_seq').pluck().get();
  }

  releaseReadLock(): void {
    if (this.lock.inTransaction) this.lock.exec('ROLLBACK');
  }

  /** Writes one row so that the WAL gets a frame (and, after a full checkpoint, restarts). */
  bumpSeq(): void {
    this.rw.prepare(SEQ_UPSERT).run();
  }

  /**
   * A checkpoint that loses nothing: under the write lock (so no transaction can commit meanwhile),
   * `beforeCheckpoint` copies every committed frame to the shadow WAL and a PASSIVE checkpoint backfills
   * the WAL into the database. Then our own write restarts the WAL if it was fully backfilled, and at once
   * (synchronously, before a waiting writer can get in) the write lock is taken again for
   * `afterRestart`, which starts the next shadow index before the new WAL cycle can grow.
   * Litestream checkpoints without the write lock, so a transaction committed between its copy and its
   * checkpoint can be backfilled and then overwritten by the restarted WAL without ever being copied.
   * Returns undefined when the write lock could not be had quickly (an application write is in progress).
   * Synchronous throughout, callbacks included: no lock is ever held across an await.
   */
  checkpoint(beforeCheckpoint: () => void, afterRestart: () => void, lockWaitMs: number): CheckpointResult | undefined {
    const previous = Number(this.rw.pragma('busy_timeout', { simple: true }));
    this.rw.pragma(`busy_timeout = ${lockWaitMs}`);
    try {
      this.rw.exec('BEGIN IMMEDIATE');
    } catch (err) {
      if (/SQLITE_BUSY|database is locked/i.test(describeError(err)) || (err as { code?: string }).code === 'SQLITE_BUSY') return undefined;
      throw err;
    } finally {
      this.rw.pragma(`busy_timeout = ${previous}`);
    }
    let result: CheckpointResult;
    try {
      try {
        beforeCheckpoint();
        this.releaseReadLock();
        [result] = this.ckpt.pragma('wal_checkpoint(PASSIVE)') as CheckpointResult[] as [CheckpointResult];
      } finally {
        this.rw.exec('COMMIT');
      }
      this.stepHook?.('committed');
      this.bumpSeq();
      this.rw.exec('BEGIN IMMEDIATE');
      try {
        afterRestart();
      } finally {
        this.rw.exec('ROLLBACK');
      }
    } finally {
      // Whatever failed above, never go on without the read lock: without it the application's own
      // checkpoints could restart the WAL over frames we have not copied.
      this.acquireReadLock();
    }
    return result;
  }

  /**
   * Runs `fn` holding the write lock (application writes wait); used to start a new shadow index.
   * `fn` is synchronous: the lock is never held across an await (see copyToShadow).
   */
  withWriteLock<T>(fn: () => T): T {
    this.rw.exec('BEGIN IMMEDIATE');
    try {
      return fn();
    } finally {
      this.rw.exec('ROLLBACK');
    }
  }

  close(): void {
    this.releaseReadLock();
    // rw and ckpt first: the read-only connection closes last and cannot delete the WAL.
    this.rw.close();
    this.ckpt.close();
    this.lock.close();
  }
}

function dirWritable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
