/**
 * The WAL shipper: the only code that talks to the live database. It follows the `-wal` file, copies
 * committed frames into the shadow WAL in order, decides checkpoints, and starts a new generation
 * exactly when continuity with the real WAL is lost. It knows nothing of uploads: replicas read its
 * shadow WAL (up to `durablePos()`) and listen to its events.
 *
 * Continuity rests on one rule (db-connection.ts): the read transaction is only (re)taken under the
 * write lock right after every committed frame was copied. So the WAL can restart behind us at most
 * once, only after its every frame is in the shadow, and a restart we observe is followed with the next
 * shadow index when nothing was added to the old one since the read transaction was taken on it (and
 * the WAL file is the same) — else a new generation, with the reason.
 */
import { EventEmitter } from 'node:events';
import { stat } from 'node:fs/promises';
import { openWhenReady } from './database-wait.js';
import { describeError, errnoCode, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import { MAX_NAMED_VALUE } from '../layout.js';
import { nullLogger, type Logger } from '../logger.js';
import type { Pos } from '../pos.js';
import { runCheckpoint } from './checkpoint.js';
import { CheckpointThrottle, DEFAULT_CHECKPOINT_POLICY, checkpointMode, type CheckpointPolicy } from './checkpoint-policy.js';
import { ShipperDb, type CheckpointStepHook } from './db-connection.js';
import { MetaDir, defaultMetaPath } from '../meta/meta-dir.js';
import { RestoreContinuation, type RestoreCheck } from './restore-continuation.js';
import { ShadowCursor, walInodeSync } from './shadow-cursor.js';
import { DEFAULT_MAX_SHADOW_WAL_BYTES, ShadowLimit, type ShadowWalUsage } from './shadow-limit.js';
import { decideStartLocked, prepareStart, type StartContext } from './startup.js';
import { SyncScheduler, type SyncOutcome } from './sync-scheduler.js';
import { pinAndDigest, pinPosition, type PinContext, type PinnedDigest } from './validation-pin.js';
import { liveImage } from './database-digest.js';
import { ChangeTimeline } from './change-timeline.js';
import { statSync } from 'node:fs';
import type { CheckpointMode } from './checkpoint-policy.js';

export type { RestoreCheck } from './restore-continuation.js';
export type { CheckpointEvent } from './checkpoint.js';
export type { ShadowWalUsage } from './shadow-limit.js';
export { DEFAULT_MAX_SHADOW_WAL_BYTES } from './shadow-limit.js';
export type { ShipperOptions, GenerationEvent, ShipperEvents } from './shipper-options.js';
import type { GenerationEvent, ShipperEvents, ShipperOptions } from './shipper-options.js';

/**
 * Least time between two copies that file notifications trigger, whatever the replicas' sync-interval.
 * Spacing them by a 1 s sync-interval saved little CPU under a heavy load, but the checkpoint that follows
 * a copy then came with up to a second's frames to backfill under the write lock: the app's throughput
 * fell from 0.91-0.93 to 0.59-0.65 of its own, and an embedded app's event-loop delay max rose by 9-11 ms.
 */
const MIN_SYNC_GAP_MS = 15;
/** How long a checkpoint or a new index waits for an application's write transaction. */
const LOCK_WAIT_MS = 100;

export class WalShipper extends EventEmitter<ShipperEvents> {
  readonly dbPath: string;
  readonly walPath: string;
  readonly meta: MetaDir;
  private readonly log: Logger;
  private readonly policy: CheckpointPolicy;
  private readonly monitorIntervalMs: number;
  private readonly busyTimeoutMs: number;
  private readonly maxFileBytes: number;
  private readonly stepHook: CheckpointStepHook | undefined;
  private readonly throttle = new CheckpointThrottle();
  private readonly limit: ShadowLimit;
  private readonly restore: RestoreContinuation;
  private readonly cursor: ShadowCursor;
  private db: ShipperDb | undefined;
  private walIno: bigint | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private scheduler: SyncScheduler | undefined;
  private closed = false;
  /** close() has begun: the background wait for the database must not start following it any more. */
  private closing = false;
  private closingDone: Promise<void> | undefined;
  private opening: Promise<unknown> | undefined;
  private reopening = false;
  private snapshotsRunning = 0;
  private lastCheckpointAt = monotonicMs();
  /** The shadow index our last checkpoint began, and its size then (see CheckpointInputs.ownSize). */
  private ownRestart: { generation: string; index: number; size: number } | undefined;
  /** A new generation asked for by a replica (requestNewGeneration), taken at the next tick. */
  private generationRequest: { generation: string; reason: string } | undefined;
  private retainFrom: () => number | undefined = () => undefined;
  private describeBehind: () => string[] = () => [];
  /** When each stretch of the shadow WAL was copied (what replica lag is measured from). */
  readonly timeline = new ChangeTimeline();
  /** Counters for monitoring (see stats()): plain numbers, incremented on the way. */
  private readonly counters: ShipperCounters = {
    syncCount: 0,
    syncErrorCount: 0,
    syncSeconds: 0,
    checkpoints: { PASSIVE: newCheckpointCounts(), RESTART: newCheckpointCounts(), TRUNCATE: newCheckpointCounts() },
  };

  constructor(opts: ShipperOptions) {
    super();
    this.dbPath = opts.dbPath;
    this.walPath = `${opts.dbPath}-wal`;
    this.meta = new MetaDir(opts.metaPath ?? defaultMetaPath(opts.dbPath));
    this.log = opts.logger ?? nullLogger;
    this.policy = { ...DEFAULT_CHECKPOINT_POLICY, ...opts.checkpoint };
    this.monitorIntervalMs = opts.monitorIntervalMs ?? 1000;
    this.busyTimeoutMs = opts.busyTimeoutMs ?? 1000;
    this.maxFileBytes = opts.maxShadowWalFileBytes ?? MAX_NAMED_VALUE + 1;
    this.stepHook = opts.checkpointStepHook;
    this.limit = new ShadowLimit(opts.maxShadowWalBytes ?? DEFAULT_MAX_SHADOW_WAL_BYTES, this.log, this.dbPath);
    this.restore = new RestoreContinuation(this.meta, this.log, this.dbPath, opts.continueAfterRestore ?? false);
    this.cursor = new ShadowCursor(this.meta, this.walPath, this.dbPath, this.maxFileBytes, this.log, {
      position: (pos) => {
        this.timeline.record(pos, monotonicMs());
        this.emit('position', pos);
      },
      generation: (generation, reason) => {
        this.restore.continuedFrom = undefined;
        this.limit.reset(this.cursor.current!.size);
        this.emit('generation', { generation, reason } satisfies GenerationEvent);
      },
    });
  }

  /** The shadow WAL's size and limit, and how often the limit was reached. */
  shadowWalUsage(): Readonly<ShadowWalUsage> {
    return this.limit.snapshot();
  }

  /**
   * The shipper's figures for monitoring (Litestream's per-database metrics): counters kept on the way,
   * and the database and WAL file sizes as they are now (a stat of each; no descriptor is opened).
   */
  stats(): ShipperStats {
    const c = this.counters;
    const checkpoints = {} as Record<CheckpointMode, CheckpointCounts>;
    for (const mode of ['PASSIVE', 'RESTART', 'TRUNCATE'] as const) checkpoints[mode] = { ...c.checkpoints[mode] };
    return {
      dbSizeBytes: fileSize(this.dbPath),
      walSizeBytes: fileSize(this.walPath),
      totalWalBytes: this.cursor.appendedBytes,
      shadowWalIndex: this.cursor.pos()?.index,
      shadowWalSizeBytes: this.limit.snapshot().bytes,
      syncCount: c.syncCount,
      syncErrorCount: c.syncErrorCount,
      syncSeconds: c.syncSeconds,
      checkpoints,
    };
  }

  /** The shipper's position: generation, current shadow index, and its committed size. */
  pos(): Pos | undefined {
    return this.cursor.pos();
  }

  /**
   * The part of the position that is durable locally (fsynced), after making it so: replicas upload only
   * this, so a power cut can never leave a replica holding bytes the local shadow WAL lost.
   */
  durablePos(): Promise<Pos | undefined> {
    return this.cursor.durablePos();
  }

  get pageSize(): number | undefined {
    return this.db?.pageSize;
  }

  /** Whether the database has been found and opened (it may not exist yet). */
  get opened(): boolean {
    return this.db !== undefined;
  }

  /** Each replica registers a check that must pass before a restored generation is continued. */
  addRestoreCheck(name: string, check: RestoreCheck): void {
    this.restore.addCheck(name, check);
  }

  /**
   * When the current generation was continued after a restore: the replica position it resumed from.
   * Its index has no shadow file here; a replica that ends exactly there moves on to the next index.
   */
  restoredFrom(): Pos | undefined {
    const from = this.restore.continuedFrom;
    const pos = this.cursor.pos();
    return pos && from?.generation === pos.generation ? from : undefined;
  }

  /**
   * Starts a new generation at the next sync, for `reason` (logged with it), if `generation` is still
   * the current one. For a replica that found the remote lineage diverged from local state (the store
   * holds bytes of this generation that the shadow WAL does not: another replicator writing to the same
   * replica, or a local tail lost in a crash): the generation cannot continue there.
   */
  requestNewGeneration(generation: string, reason: string): void {
    if (this.cursor.pos()?.generation === generation) this.generationRequest ??= { generation, reason };
  }

  /** Replicas tell the shipper the lowest shadow index they still need, and which of them are behind. */
  setRetention(fn: () => number | undefined, behind?: () => string[]): void {
    this.retainFrom = fn;
    if (behind) this.describeBehind = behind;
  }

  /**
   * Opens the database, syncs once and starts following it. A database that does not exist yet (the
   * application creates it) or is locked for longer than the busy timeout is waited for, with a log line:
   * here, unless `waitForDatabase` is false — then in the background, and `opened` tells when it is done.
   */
  async start(signal?: AbortSignal, opts: { waitForDatabase?: boolean } = {}): Promise<void> {
    const said = { what: undefined as string | undefined };
    const wait = (keepWaiting: () => boolean) =>
      openWhenReady({
        dbPath: this.dbPath,
        log: this.log,
        signal,
        said,
        keepWaiting,
        closed: () => this.closed || this.closing,
        maxDelayMs: Math.max(1000, this.monitorIntervalMs),
        open: () => this.serial(() => this.openOnce()),
      }).then(async (opened) => {
        if (!opened || this.closed || this.closing || signal?.aborted) return opened;
        // A first sync that fails is retried by the scheduler like any other: following must start.
        await this.sync().catch((err: unknown) => this.log.error('sync failed', { db: this.dbPath, error: describeError(err), retry: 'with backoff' }));
        this.follow();
        return true;
      });
    // Only a database that is missing or locked goes to the background; any other error is the caller's.
    const background = opts.waitForDatabase === false;
    this.opening = wait(() => !background);
    const opened = await this.opening;
    if (!opened && background && !this.closed && !signal?.aborted) {
      this.opening = wait(() => true);
      this.opening.catch((err: unknown) => this.log.error('cannot replicate the database', { db: this.dbPath, error: describeError(err) }));
    }
  }

  /** Runs one sync now (copy new frames, maybe checkpoint). */
  async sync(): Promise<void> {
    await this.serial(() => this.countedTick(true));
  }

  /**
   * Copies what is committed now, for a replica about to upload (copies that notifications trigger are
   * spaced by MIN_SYNC_GAP_MS). A failure is left to the scheduler's next sync, which logs and retries it.
   */
  async catchUp(): Promise<void> {
    await this.serial(() => this.countedTick(false)).catch(() => undefined);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private follow(): void {
    if (this.closed) return;
    this.scheduler = new SyncScheduler({
      dbPath: this.dbPath,
      walPath: this.walPath,
      monitorIntervalMs: this.monitorIntervalMs,
      minGapMs: MIN_SYNC_GAP_MS,
      log: this.log,
      run: (durable) => this.serial(() => this.countedTick(durable)),
      onError: (err) => {
        if (this.listenerCount('error') > 0) this.emit('error', err);
      },
    });
    this.scheduler.start();
  }

  /**
   * Opens the database and decides, under the write lock, whether the generation on disk continues: the
   * shadow must still mirror the WAL (or the WAL must be its provably next cycle), else a new generation.
   * Throws a busy error (retried by the caller) while another connection holds a lock too long.
   */
  private async init(): Promise<void> {
    const db = ShipperDb.open(this.dbPath, { busyTimeoutMs: this.busyTimeoutMs, journalSizeLimitBytes: this.journalSizeLimit() });
    try {
      db.stepHook = this.stepHook;
      await this.meta.adoptPermissionsOf(this.dbPath);
      await this.meta.ensure();
      await this.meta.removeTempFiles();
      db.ensureWalHeader(this.busyTimeoutMs);
      this.walIno = await this.walInode();
      this.cursor.walIno = this.walIno;
      db.wal.keepOnly(this.walIno);
      const c: StartContext = { db, meta: this.meta, cursor: this.cursor, restore: this.restore, dbPath: this.dbPath, walPath: this.walPath, log: this.log };
      const plan = await prepareStart(c);
      db.step('start-prepared');
      for (let attempt = 1; ; attempt++) {
        let decided = false;
        if (!(await db.withWriteLockRetrying(() => (decided = decideStartLocked(c, plan)), { stepWaitMs: LOCK_WAIT_MS, totalMs: this.busyTimeoutMs * 10 }))) {
          throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
        }
        if (decided) break;
        // An application TRUNCATE emptied the WAL meanwhile (we hold no read transaction yet): a header again.
        if (attempt >= 5) throw new ReplicateError('IO', `opening ${this.dbPath}: ${this.walPath} keeps losing its header (checkpointed with TRUNCATE over and over)`);
        db.ensureWalHeader(this.busyTimeoutMs);
      }
      // Consumed either way; a crash before this leaves it to the next start, which finds a generation and drops it.
      if (plan.generation === undefined) await this.restore.dropMarker();
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
  private async countedTick(durable: boolean): Promise<SyncOutcome> {
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
    if (this.closed) return;
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
    } else if (!db.tryWithWriteLock(LOCK_WAIT_MS, () => cursor.settleLocked(db))) {
      // A restart to follow (or a shadow that looked diverged without the lock): decided under the lock.
      // No checkpoint while that waits: it would vouch for a cycle never copied.
      this.log.debug("wal restarted; the next index waits for the application's write", { db: this.dbPath });
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
    const mode = checkpointMode(this.policy, { pageSize: this.db.pageSize, walSize: cur.size, shadowSize: cur.size, idleMs: now - this.lastCheckpointAt, ownSize });
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
      this.log.debug('checkpoint could not backfill every frame (readers hold older snapshots)', { db: this.dbPath, log: out.event.log, checkpointed: out.event.checkpointed });
    }
    this.log.debug('checkpoint', { db: this.dbPath, ...out.event });
    this.emit('checkpoint', out.event);
  }

  /** What cleanShadows last listed (see there). */
  private shadowListing: { key: string; olderSizes: number[] } | undefined;

  private async cleanShadows(): Promise<void> {
    const cur = this.cursor.current;
    if (!cur) return;
    const needed = this.retainFrom();
    // The directory is listed (and the older files' sizes read) only when something that decides what is
    // in it changed: the generation, the index being written, or how far every replica got. Between those
    // only the current file grows, so every other sync costs one stat instead of a listing and a stat per
    // file (this ran on every tick: a tenth of the replicator's CPU under a steady write load).
    const key = `${cur.generation}/${cur.index}/${needed ?? '-'}`;
    if (this.shadowListing?.key !== key) {
      // One older file is kept, as Litestream does. One directory listing serves both steps.
      const left = needed !== undefined ? await this.meta.removeShadowsBelow(cur.generation, needed - 1) : await this.meta.shadowIndexes(cur.generation);
      const older = left.filter((i) => i !== cur.index);
      const olderSizes = await Promise.all(older.map(async (i) => (await this.meta.shadowSize(cur.generation, i)) ?? 0));
      this.shadowListing = { key, olderSizes };
    }
    // The current file is what the cursor copied into it (a file gone is found by the next copy).
    const sizes = [...this.shadowListing.olderSizes, cur.size];
    const reason = this.limit.check(cur.generation, sizes, this.describeBehind);
    if (reason) {
      this.startNewGeneration(reason);
      await this.meta.removeOtherGenerations(this.cursor.current.generation);
    }
  }

  /**
   * Runs `fn` while no checkpoint of ours can run (so the WAL cannot restart and the database file holds
   * every frame of the indexes before the current one). Returns what `fn` returns.
   */
  async withSnapshotLock<T>(fn: (pos: Pos, image: (chunkPages?: number) => AsyncGenerator<Buffer>) => Promise<T>): Promise<T> {
    this.snapshotsRunning++;
    try {
      await this.sync();
      // A reader pinned at the position keeps checkpoints from backfilling frames past it into the file
      // while it is streamed, and the image is the file overlaid with the WAL's frames up to it (those a
      // concurrent checkpoint may be writing): the snapshot is exactly the database at that position,
      // never a torn or mixed page set.
      const pinned = await pinPosition(this.pinContext(), 'a snapshot');
      try {
        return await fn(pinned.pos, () => liveImage(this.db!.file, this.walPath, pinned.pos.offset, { overlay: !pinned.backfilled }));
      } finally {
        pinned.release();
      }
    } finally {
      this.snapshotsRunning--;
    }
  }

  /** The live database's page digest at a position the replicas will reach, for validation (validation-pin.ts). */
  async digestAtPosition(): Promise<PinnedDigest> {
    return pinAndDigest(this.pinContext());
  }

  private pinContext(): PinContext {
    return {
      serial: (fn) => this.serial(fn),
      sync: () => this.sync(),
      pinLocked: (pin) => {
        const db = this.db;
        const cur = this.cursor.current;
        if (this.closed || !db || !cur) throw new Error('the database is not open');
        const out = db.tryWithWriteLock(LOCK_WAIT_MS, () => {
          // Restarted (or not settled) since the last sync: followed here; then pin again.
          if (!this.cursor.settleLocked(db)) return undefined;
          // Past the offset limit the shadow lags SQLite: no image at its end exists to pin.
          if (this.cursor.current!.capped) throw new ReplicateError('IO', `${this.dbPath}: the wal cycle is past the offset limit of v0.3 segment names; nothing can be pinned until it restarts`);
          pin();
          return { pos: this.cursor.pos()!, backfilled: db.fullyBackfilled() };
        });
        return out?.value;
      },
      dbPath: this.dbPath,
      walPath: this.walPath,
      file: () => this.db!.file,
      busyTimeoutMs: this.busyTimeoutMs,
    };
  }

  /** Opens the database unless a concurrent open (the background wait, or close) already did. */
  private async openOnce(): Promise<void> {
    if (!this.db) await this.init();
  }

  /**
   * Before a final sync: opens the database if it exists now and was not opened yet. The background wait
   * looks for a missing database only now and then, and an application that creates it and exits between
   * two looks (`replicate -exec` with a short-lived app) has committed transactions that must still be
   * shipped. Throws when the database is there but cannot be opened.
   */
  async openIfPresent(): Promise<void> {
    if (this.db || this.closed) return;
    const exists = await stat(this.dbPath).then(
      () => true,
      () => false,
    );
    if (!exists) return;
    await this.serial(() => this.openOnce()).catch((err: unknown) => {
      throw new ReplicateError('IO', `cannot open ${this.dbPath} for the final sync; what it holds is not replicated: ${describeError(err)}`, { cause: err });
    });
  }

  /** Stops following the database and closes its connections (a final sync first). */
  close(): Promise<void> {
    // A second caller waits for the same close (the final sync included), not just for it to have begun.
    this.closingDone ??= this.closeOnce();
    return this.closingDone;
  }

  private async closeOnce(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    this.scheduler?.stop();
    if (this.db) await this.sync().catch((err: unknown) => this.log.warn('final sync failed', { db: this.dbPath, error: describeError(err) }));
    this.closed = true;
    await this.opening?.catch(() => undefined);
    await this.serial(async () => {
      this.db?.close();
      this.db = undefined;
    });
  }
}

interface ShipperCounters {
  syncCount: number;
  syncErrorCount: number;
  syncSeconds: number;
  checkpoints: Record<CheckpointMode, CheckpointCounts>;
}

/** Checkpoints of one mode run by the shipper: Litestream's checkpoint_count, _error_count, _seconds. */
export interface CheckpointCounts {
  count: number;
  errorCount: number;
  seconds: number;
}

function newCheckpointCounts(): CheckpointCounts {
  return { count: 0, errorCount: 0, seconds: 0 };
}

/** The shipper's figures (see WalShipper.stats()). Sizes in bytes; undefined while not known. */
export interface ShipperStats {
  /** The database file's size now (litestream_db_size). */
  dbSizeBytes: number | undefined;
  /** The -wal file's size now (litestream_wal_size). */
  walSizeBytes: number | undefined;
  /** Bytes written to shadow WAL files by this process (litestream_total_wal_bytes). */
  totalWalBytes: number;
  /** The current shadow WAL index (litestream_shadow_wal_index). */
  shadowWalIndex: number | undefined;
  /** Bytes of shadow WAL files of the current generation, as of the last sync (litestream_shadow_wal_size). */
  shadowWalSizeBytes: number;
  syncCount: number;
  syncErrorCount: number;
  syncSeconds: number;
  checkpoints: Record<CheckpointMode, CheckpointCounts>;
}

function fileSize(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
}
