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
 *
 * This class owns when the shipper works and what callers see: opening and closing, the sync scheduler,
 * one queue for every piece of database work, the snapshot and validation pins, the events. The work
 * itself is the follow loop's (wal-follower.ts).
 */
import { EventEmitter } from 'node:events';
import { stat } from 'node:fs/promises';
import {
  DEFAULT_CHECKPOINT_POLICY,
  DEFAULT_MAX_SHADOW_WAL_BYTES,
  DEFAULT_MAX_SHADOW_WAL_FILE_BYTES,
  DEFAULT_MONITOR_INTERVAL_MS,
} from '../config/defaults.js';
import { openWhenReady } from './database-wait.js';
import { describeError, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import { reportError } from '../internal/report-error.js';
import { SerialQueue } from '../internal/serial-queue.js';
import { nullLogger, type Logger } from '../logger.js';
import type { Pos } from '../pos.js';
import { MetaDir, defaultMetaPath } from '../meta/meta-dir.js';
import { RestoreContinuation, type RestoreCheck } from './restore-continuation.js';
import { ShadowCleanup } from './shadow-cleanup.js';
import { ShadowCursor } from './shadow-cursor.js';
import { ShadowLimit, type ShadowWalUsage } from './shadow-limit.js';
import { shipperStats, type ShipperStats } from './shipper-stats.js';
import { SyncScheduler } from './sync-scheduler.js';
import { pinAndDigest, pinAtShadowEnd, pinPosition, type PinContext, type PinnedDigest } from './validation-pin.js';
import { WalFollower } from './wal-follower.js';
import { liveImage } from './database-digest.js';
import { ChangeTimeline } from './change-timeline.js';
import type { GenerationEvent, ShipperEvents, ShipperOptions } from './shipper-options.js';

/**
 * Least time between two copies that file notifications trigger, whatever the replicas' sync-interval:
 * the checkpoint that follows a copy then has at most 15 ms of frames to backfill under the write lock,
 * where a 1 s spacing costs an app under load a third of its throughput for little CPU saved
 * (docs/performance.md, "What changed for replication").
 */
const MIN_SYNC_GAP_MS = 15;

export class WalShipper extends EventEmitter<ShipperEvents> {
  readonly dbPath: string;
  readonly walPath: string;
  readonly meta: MetaDir;
  private readonly log: Logger;
  private readonly monitorIntervalMs: number;
  private readonly busyTimeoutMs: number;
  private readonly maxFileBytes: number;
  private readonly limit: ShadowLimit;
  private readonly cleanup: ShadowCleanup;
  private readonly restore: RestoreContinuation;
  private readonly cursor: ShadowCursor;
  private readonly follower: WalFollower;
  /** Every piece of database work, one at a time: syncs, opening, closing, pinning a position. */
  private readonly dbWork = new SerialQueue();
  private scheduler: SyncScheduler | undefined;
  private closed = false;
  /** close() has begun: the background wait for the database must not start following it any more. */
  private closing = false;
  private closingDone: Promise<void> | undefined;
  private opening: Promise<unknown> | undefined;
  /** When each stretch of the shadow WAL was copied (what replica lag is measured from). */
  readonly timeline = new ChangeTimeline();

  constructor(opts: ShipperOptions) {
    super();
    this.dbPath = opts.dbPath;
    this.walPath = `${opts.dbPath}-wal`;
    this.meta = new MetaDir(opts.metaPath ?? defaultMetaPath(opts.dbPath));
    this.log = opts.logger ?? nullLogger;
    this.monitorIntervalMs = opts.monitorIntervalMs ?? DEFAULT_MONITOR_INTERVAL_MS;
    this.busyTimeoutMs = opts.busyTimeoutMs ?? 1000;
    this.maxFileBytes = opts.maxShadowWalFileBytes ?? DEFAULT_MAX_SHADOW_WAL_FILE_BYTES;
    this.limit = new ShadowLimit(opts.maxShadowWalBytes ?? DEFAULT_MAX_SHADOW_WAL_BYTES, this.log, this.dbPath);
    this.cleanup = new ShadowCleanup(this.meta, this.limit);
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
    this.follower = new WalFollower({
      dbPath: this.dbPath,
      walPath: this.walPath,
      meta: this.meta,
      log: this.log,
      cursor: this.cursor,
      restore: this.restore,
      cleanup: this.cleanup,
      policy: { ...DEFAULT_CHECKPOINT_POLICY, ...opts.checkpoint },
      busyTimeoutMs: this.busyTimeoutMs,
      stepHook: opts.checkpointStepHook,
      closed: () => this.closed,
      onCheckpoint: (event) => this.emit('checkpoint', event),
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
    return shipperStats(this.follower.counters, {
      dbPath: this.dbPath,
      walPath: this.walPath,
      totalWalBytes: this.cursor.appendedBytes,
      shadowWalIndex: this.cursor.pos()?.index,
      shadowWalSizeBytes: this.limit.snapshot().bytes,
    });
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
    return this.follower.db?.pageSize;
  }

  /** Whether the database has been found and opened (it may not exist yet). */
  get opened(): boolean {
    return this.follower.db !== undefined;
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
    return this.restore.restoredFrom(this.cursor.pos());
  }

  /**
   * Starts a new generation at the next sync, for `reason` (logged with it), if `generation` is still
   * the current one. For a replica that found the remote lineage diverged from local state (the store
   * holds bytes of this generation that the shadow WAL does not: another replicator writing to the same
   * replica, or a local tail lost in a crash): the generation cannot continue there.
   */
  requestNewGeneration(generation: string, reason: string): void {
    this.follower.requestNewGeneration(generation, reason);
  }

  /** Replicas tell the shipper the lowest shadow index they still need, and which of them are behind. */
  setRetention(fn: () => number | undefined, behind?: () => string[]): void {
    this.cleanup.setRetention(fn, behind);
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
        open: () => this.dbWork.run(() => this.openOnce()),
      }).then(async (opened) => {
        if (!opened || this.closed || this.closing || signal?.aborted) return opened;
        // A first sync that fails is retried by the scheduler like any other: following must start.
        await this.sync().catch((err: unknown) =>
          this.log.error('sync failed', { db: this.dbPath, error: describeError(err), retry: 'with backoff' }),
        );
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
    await this.dbWork.run(() => this.follower.countedTick(true));
  }

  /**
   * Copies what is committed now, for a replica about to upload (copies that notifications trigger are
   * spaced by MIN_SYNC_GAP_MS). A failure is left to the scheduler's next sync, which logs and retries it.
   */
  async catchUp(): Promise<void> {
    await this.dbWork.run(() => this.follower.countedTick(false)).catch(() => undefined);
  }

  private follow(): void {
    if (this.closed) return;
    this.scheduler = new SyncScheduler({
      dbPath: this.dbPath,
      walPath: this.walPath,
      monitorIntervalMs: this.monitorIntervalMs,
      minGapMs: MIN_SYNC_GAP_MS,
      log: this.log,
      run: (durable) => this.dbWork.run(() => this.follower.countedTick(durable)),
      onError: (err) => reportError(this, err),
    });
    this.scheduler.start();
  }

  /**
   * Runs `fn` while no checkpoint of ours can run (so the WAL cannot restart and the database file holds
   * every frame of the indexes before the current one). Returns what `fn` returns.
   */
  async withSnapshotLock<T>(fn: (pos: Pos, image: (chunkPages?: number) => AsyncGenerator<Buffer>) => Promise<T>): Promise<T> {
    this.follower.snapshotsRunning++;
    try {
      await this.sync();
      // A reader pinned at the position keeps checkpoints from backfilling frames past it into the file
      // while it is streamed, and the image is the file overlaid with the WAL's frames up to it (those a
      // concurrent checkpoint may be writing): the snapshot is exactly the database at that position,
      // never a torn or mixed page set.
      const pinned = await pinPosition(this.pinContext(), 'a snapshot');
      try {
        return await fn(pinned.pos, () =>
          liveImage(this.follower.db!.file, this.walPath, pinned.pos.offset, { overlay: !pinned.backfilled }),
        );
      } finally {
        pinned.release();
      }
    } finally {
      this.follower.snapshotsRunning--;
    }
  }

  /** The live database's page digest at a position the replicas will reach, for validation (validation-pin.ts). */
  async digestAtPosition(): Promise<PinnedDigest> {
    return pinAndDigest(this.pinContext());
  }

  private pinContext(): PinContext {
    return {
      runDbWork: (fn) => this.dbWork.run(fn),
      sync: () => this.sync(),
      pinLocked: (pin) => {
        const db = this.follower.db;
        if (this.closed || !db || !this.cursor.current) throw new ReplicateError('IO', 'the database is not open');
        return pinAtShadowEnd(db, this.cursor, this.dbPath, pin);
      },
      dbPath: this.dbPath,
      walPath: this.walPath,
      file: () => this.follower.db!.file,
      busyTimeoutMs: this.busyTimeoutMs,
    };
  }

  /** Opens the database unless a concurrent open (the background wait, or close) already did. */
  private async openOnce(): Promise<void> {
    if (!this.follower.db) await this.follower.init();
  }

  /**
   * Before a final sync: opens the database if it exists now and was not opened yet. The background wait
   * looks for a missing database only now and then, and an application that creates it and exits between
   * two looks (`replicate -exec` with a short-lived app) has committed transactions that must still be
   * shipped. Throws when the database is there but cannot be opened.
   */
  async openIfPresent(): Promise<void> {
    if (this.follower.db || this.closed) return;
    const exists = await stat(this.dbPath).then(
      () => true,
      () => false,
    );
    if (!exists) return;
    await this.dbWork
      .run(() => this.openOnce())
      .catch((err: unknown) => {
        throw new ReplicateError(
          'IO',
          `cannot open ${this.dbPath} for the final sync; what it holds is not replicated: ${describeError(err)}`,
          { cause: err },
        );
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
    if (this.follower.db)
      await this.sync().catch((err: unknown) => this.log.warn('final sync failed', { db: this.dbPath, error: describeError(err) }));
    this.closed = true;
    await this.opening?.catch(() => undefined);
    await this.dbWork.run(async () => this.follower.close());
  }
}
