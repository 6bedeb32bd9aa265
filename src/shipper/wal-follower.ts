/**
 * The follow/copy loop: one tick at a time (WalShipper runs them one after another), it copies what is
 * committed in the `-wal` into the shadow WAL, follows a WAL restart with the next index, starts a new
 * generation when continuity is lost (or a replica or the shadow WAL limit asks for one), checkpoints by
 * Litestream's thresholds, and cleans shadow files no replica needs. Also the opening of the database
 * (the start-up decision of startup.ts) and its reopening when the WAL file is replaced. Apart from
 * WalShipper, which owns when this runs (the scheduler, the open and close sequence) and what callers see.
 */
import { errnoCode, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import type { Logger } from '../logger.js';
import type { MetaDir } from '../meta/meta-dir.js';
import { runCheckpoint, type CheckpointEvent } from './checkpoint.js';
import { CheckpointThrottle, checkpointMode, type CheckpointPolicy } from './checkpoint-policy.js';
import { LOCK_WAIT_MS, ShipperDb, type CheckpointStepHook } from './db-connection.js';
import type { RestoreContinuation } from './restore-continuation.js';
import { walInodeSync, type ShadowCursor } from './shadow-cursor.js';
import type { ShadowCleanup } from './shadow-cleanup.js';
import { newShipperCounters, type ShipperCounters } from './shipper-stats.js';
import { decideStartLocked, prepareStart, type StartContext } from './startup.js';
import { takeSeqWriteNote, type SeqWriteNote } from './seq-write-note.js';
import type { SyncOutcome } from './sync-scheduler.js';

export interface WalFollowerOptions {
  dbPath: string;
  walPath: string;
  meta: MetaDir;
  log: Logger;
  cursor: ShadowCursor;
  restore: RestoreContinuation;
  cleanup: ShadowCleanup;
  policy: CheckpointPolicy;
  busyTimeoutMs: number;
  stepHook: CheckpointStepHook | undefined;
  /** The shipper is closed: a tick does nothing. */
  closed(): boolean;
  /** A checkpoint of ours ran (logged already). */
  onCheckpoint(event: CheckpointEvent): void;
}

export class WalFollower {
  private readonly dbPath: string;
  private readonly walPath: string;
  private readonly meta: MetaDir;
  private readonly log: Logger;
  private readonly cursor: ShadowCursor;
  private readonly policy: CheckpointPolicy;
  private readonly busyTimeoutMs: number;
  private readonly throttle = new CheckpointThrottle();
  /** The open connections; undefined until opened, and while a reopen waits for the database. */
  db: ShipperDb | undefined;
  private walIno: bigint | undefined;
  private reopening = false;
  /** Snapshots being read now (WalShipper.withSnapshotLock): no checkpoint of ours meanwhile. */
  snapshotsRunning = 0;
  private lastCheckpointAt = monotonicMs();
  /** The shadow index our last checkpoint began, and its size then (see CheckpointInputs.ownSize). */
  private ownRestart: { generation: string; index: number; size: number } | undefined;
  /** A new generation asked for by a replica (requestNewGeneration), taken at the next tick. */
  private generationRequest: { generation: string; reason: string } | undefined;
  readonly counters: ShipperCounters = newShipperCounters();
  /** The note of a seq write made before the last stop, taken at the first start-up attempt (see init). */
  private seqWriteNote: SeqWriteNote | undefined;

  constructor(private readonly o: WalFollowerOptions) {
    this.dbPath = o.dbPath;
    this.walPath = o.walPath;
    this.meta = o.meta;
    this.log = o.log;
    this.cursor = o.cursor;
    this.policy = o.policy;
    this.busyTimeoutMs = o.busyTimeoutMs;
  }

  /** See WalShipper.requestNewGeneration. */
  requestNewGeneration(generation: string, reason: string): void {
    if (this.cursor.pos()?.generation === generation) this.generationRequest ??= { generation, reason };
  }

  /** Closes the database's connections (the caller ran the final sync first). */
  close(): void {
    this.db?.close();
    this.db = undefined;
  }

  /**
   * Opens the database and decides, under the write lock, whether the generation on disk continues: the
   * shadow must still mirror the WAL (or the WAL must be its provably next cycle), else a new generation.
   * Throws a busy error (retried by the caller) while another connection holds a lock too long.
   */
  async init(): Promise<void> {
    const db = ShipperDb.open(this.dbPath, { busyTimeoutMs: this.busyTimeoutMs, journalSizeLimitBytes: this.journalSizeLimit() });
    try {
      db.stepHook = this.o.stepHook;
      await this.meta.adoptPermissionsOf(this.dbPath);
      await this.meta.ensure();
      await this.meta.removeTempFiles();
      // Taken before our own seq write below can write the value it announces (seq-write-note.ts), and
      // kept across attempts (an application holding the lock makes start-up try again); that write gives
      // a WAL without a header a new first frame, so the note can prove nothing after it.
      this.seqWriteNote ??= takeSeqWriteNote(this.meta);
      if (db.ensureWalHeader(this.busyTimeoutMs) === undefined) this.seqWriteNote = undefined;
      this.walIno = await this.walInode();
      this.cursor.walIno = this.walIno;
      db.wal.keepOnly(this.walIno);
      const c: StartContext = {
        db,
        meta: this.meta,
        cursor: this.cursor,
        restore: this.o.restore,
        dbPath: this.dbPath,
        walPath: this.walPath,
        log: this.log,
      };
      const plan = await prepareStart(c, this.seqWriteNote);
      db.step('start-prepared');
      for (let attempt = 1; ; attempt++) {
        let decided = false;
        if (
          !(await db.withWriteLockRetrying(() => (decided = decideStartLocked(c, plan)), {
            stepWaitMs: LOCK_WAIT_MS,
            totalMs: this.busyTimeoutMs * 10,
          }))
        ) {
          throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
        }
        if (decided) break;
        // An application TRUNCATE emptied the WAL meanwhile (we hold no read transaction yet): a header again.
        if (attempt >= 5)
          throw new ReplicateError(
            'IO',
            `opening ${this.dbPath}: ${this.walPath} keeps losing its header (checkpointed with TRUNCATE over and over)`,
          );
        if (db.ensureWalHeader(this.busyTimeoutMs) === undefined) plan.seqWrite = this.seqWriteNote = undefined;
      }
      this.seqWriteNote = undefined; // decided
      // Consumed either way; a crash before this leaves it to the next start, which finds a generation and drops it.
      if (plan.generation === undefined) await this.o.restore.dropMarker();
      await this.meta.removeOtherGenerations(this.cursor.current!.generation);
      this.db = db;
    } catch (err) {
      if (this.db !== db) db.close();
      throw err;
    }
  }

  // Synchronous, like the rest of a tick's file work: a stat takes microseconds, and through the thread
  // pool it would cost more in wake-ups than it does (many databases each tick every second).
  private async walInode(): Promise<bigint | undefined> {
    return walInodeSync(this.walPath);
  }

  /** Cut the WAL file back to a few checkpoints' worth when our write restarts it. */
  private journalSizeLimit(): number {
    return Math.max(4 << 20, 4096 * Math.max(this.policy.minCheckpointPageCount, 1) * 2);
  }

  /** A tick, counted and timed for monitoring (Litestream's sync_count, sync_error_count, sync_seconds). */
  async countedTick(durable: boolean): Promise<SyncOutcome> {
    const started = monotonicMs();
    try {
      return await this.tick(durable);
    } catch (err) {
      this.counters.syncErrorCount++;
      throw err;
    } finally {
      this.counters.syncCount++;
      this.counters.syncSeconds += (monotonicMs() - started) / 1000;
    }
  }

  /** One sync, and whether a transaction was being written and not committed yet (see SyncOutcome). */
  private async tick(durable: boolean): Promise<SyncOutcome> {
    if (this.o.closed()) return;
    const cursor = this.cursor;
    if (!this.db || !cursor.current) {
      // Not opened yet (start() does that), or a reopen that failed (locked): retried here.
      if (this.reopening) {
        await this.init();
        this.reopening = false;
      }
      return;
    }
    // A WAL replaced or deleted underneath us: our connections still hold the old file; start afresh.
    const walIno = await this.walInode();
    if (walIno !== this.walIno) {
      this.log.warn('wal file was replaced or deleted by another process; reopening the database', { db: this.dbPath });
      this.db.close();
      this.db = undefined;
      cursor.reset();
      this.reopening = true;
      await this.init();
      this.reopening = false;
      return;
    }
    const db = this.db;
    // The descriptor the header reads below go through is of the file the path names (checked just now).
    db.wal.keepOnly(walIno);
    const request = this.generationRequest;
    this.generationRequest = undefined;
    if (request && request.generation === cursor.current.generation) this.startNewGeneration(request.reason);
    // Its read of the header is the first of the two around SQLite's committed count (copyUnlocked).
    const header = db.ensureWalHeader(this.busyTimeoutMs);
    let copy;
    try {
      copy = cursor.copyUnlocked(db, durable, header);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      this.startNewGeneration('no shadow wal (the shadow file was removed)');
      return;
    }
    let outcome: SyncOutcome = undefined;
    if (copy && !copy.diverged) {
      this.maybeCheckpoint();
      // Also after a copy that appended: the watch was off since the event that asked for this sync,
      // and a transaction that wrote its frames meanwhile publishes them with no event of its own.
      if (cursor.frameInProgress(db)) outcome = copy.appended > 0 ? 'in-progress-after-copy' : 'in-progress';
      else if (copy.appended > 0) outcome = 'copied';
    } else {
      // A restart to follow (or a shadow that looked diverged without the lock): decided under the lock,
      // which an application's write may keep. A restart is noted first (see noteRestartUnlocked).
      if (!copy) cursor.noteRestartUnlocked(db);
      if (!db.tryWithWriteLock(LOCK_WAIT_MS, () => cursor.settleLocked(db))) {
        // No checkpoint while that waits: it would vouch for a cycle never copied.
        this.log.debug("wal restarted; the next index waits for the application's write", { db: this.dbPath });
      }
    }
    await this.cleanShadows();
    return outcome;
  }

  /** A new generation decided outside the lock (a removed shadow file, the shadow WAL limit, a replica's request). */
  private startNewGeneration(reason: string): void {
    const db = this.db!;
    if (!db.tryWithWriteLock(this.busyTimeoutMs, () => this.cursor.newGenerationLocked(db, reason))) {
      throw new ReplicateError('IO', `starting a new generation of ${this.dbPath} (${reason}): the database stayed locked`);
    }
  }

  /** Litestream's thresholds decide; the throttle spaces out attempts that could not restart the WAL. */
  private maybeCheckpoint(): void {
    const cur = this.cursor.current;
    if (this.snapshotsRunning > 0 || !cur || !this.db) return;
    const now = monotonicMs();
    const own = this.ownRestart;
    const ownSize = own && own.generation === cur.generation && own.index === cur.index ? own.size : 0;
    const mode = checkpointMode(this.policy, {
      pageSize: this.db.pageSize,
      walSize: cur.size,
      shadowSize: cur.size,
      idleMs: now - this.lastCheckpointAt,
      ownSize,
    });
    if (!mode || !this.throttle.allowed(now)) return;
    const counts = this.counters.checkpoints[mode];
    let out;
    try {
      out = runCheckpoint(this.db, this.cursor, mode, LOCK_WAIT_MS);
    } catch (err) {
      counts.errorCount++;
      throw err;
    }
    if (!out.busy && !out.followed) {
      counts.count++;
      counts.seconds += (monotonicMs() - now) / 1000;
    }
    if (out.busy) {
      this.throttle.recordBusy(now);
      this.log.debug('checkpoint skipped: the application holds the write lock', { db: this.dbPath, mode });
      return;
    }
    if (out.followed) return; // the WAL had restarted: followed instead; no checkpoint was run
    this.lastCheckpointAt = now;
    this.throttle.record(now, out.restarted);
    // A new cycle our seq write began holds, right after the checkpoint, that write and maybe application
    // commits after it; the size now is what we know to be ours, or close enough (see ownSize).
    const after = this.cursor.current;
    this.ownRestart = out.seqBeganCycle && after ? { generation: after.generation, index: after.index, size: after.size } : undefined;
    if (!out.restarted && out.event.log !== out.event.checkpointed) {
      this.log.debug('checkpoint could not backfill every frame (readers hold older snapshots)', {
        db: this.dbPath,
        log: out.event.log,
        checkpointed: out.event.checkpointed,
      });
    }
    this.log.debug('checkpoint', { db: this.dbPath, ...out.event });
    this.o.onCheckpoint(out.event);
  }

  /** Cleans shadow files no replica needs; a new generation when the shadow WAL limit is reached. */
  private async cleanShadows(): Promise<void> {
    const cur = this.cursor.current;
    if (!cur) return;
    const reason = await this.o.cleanup.clean(cur);
    if (reason) {
      this.startNewGeneration(reason);
      await this.meta.removeOtherGenerations(this.cursor.current.generation);
    }
  }
}
