/**
 * The WAL shipper: the only code that talks to the live database. It follows the `-wal` file, copies
 * committed frames into the shadow WAL in order, decides checkpoints, and starts a new generation
 * exactly when continuity with the real WAL is lost. It knows nothing of uploads: replicas read its
 * shadow WAL (up to `durablePos()`) and listen to its events.
 *
 * Continuity rests on one rule (db-connection.ts): the read transaction is only (re)taken under the
 * write lock right after every committed frame was copied. So the WAL can restart behind us at most
 * once, only after its every frame is in the shadow, and a restart we observe is followed with the next
 * shadow index when it is the very next cycle (salt-1 + 1) — else a new generation, with the reason.
 */
import { EventEmitter } from 'node:events';
import { stat } from 'node:fs/promises';
import { describeError, errnoCode, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import { MAX_INDEX, MAX_NAMED_VALUE, formatHex8 } from '../layout.js';
import { nullLogger, type Logger } from '../logger.js';
import { comparePos, type Pos } from '../pos.js';
import { frameAlign, parseWalHeader } from '../sqlite/wal-format.js';
import { CheckpointThrottle, DEFAULT_CHECKPOINT_POLICY, checkpointMode, type CheckpointMode, type CheckpointPolicy } from './checkpoint-policy.js';
import { ShipperDb, isBusy, type CheckpointStepHook } from './db-connection.js';
import { MetaDir, defaultMetaPath } from './meta.js';
import { RestoreContinuation, type RestoreCandidate, type RestoreCheck } from './restore-continuation.js';
import { writeContinuedFromSync } from './restore-marker.js';
import { DEFAULT_MAX_SHADOW_WAL_BYTES, ShadowLimit, type ShadowWalUsage } from './shadow-limit.js';
import { copyToShadow, cycleFollowsShadow, initShadow, lastFrameMatches, readWalHeaderBytesSync, repairShadow } from './shadow-wal.js';
import { SyncScheduler } from './sync-scheduler.js';
import { pinAndDigest, type PinnedDigest } from './validation-pin.js';

export type { RestoreCheck } from './restore-continuation.js';
export type { ShadowWalUsage } from './shadow-limit.js';
export { DEFAULT_MAX_SHADOW_WAL_BYTES } from './shadow-limit.js';

export interface ShipperOptions {
  dbPath: string;
  metaPath?: string;
  /** Poll period, the safety net behind file watching (default 1 s; 0 = no background syncing). */
  monitorIntervalMs?: number;
  checkpoint?: Partial<CheckpointPolicy>;
  /** SQLite busy timeout of the shipper's connections (default 1 s). */
  busyTimeoutMs?: number;
  /**
   * Most bytes of shadow WAL kept for replicas that are behind (default 1 GiB; 0: no limit). Reaching it
   * is logged as an error and starts a new generation, so the old generation's shadow files can go.
   */
  maxShadowWalBytes?: number;
  /**
   * Continue the generation a restore left a marker for (default false, as Litestream: a new generation).
   * Only safe when the database's previous replicator has stopped for good: if it is still running (a
   * rolling deployment keeps the old instance up while the new one restores), both would write into one
   * generation and interleave two histories.
   */
  continueAfterRestore?: boolean;
  /**
   * Largest size of one shadow WAL file (default 4 GiB: v0.3 names a segment by its start offset in 8 hex
   * digits). A WAL cycle that grows past it (a reader keeps the WAL from restarting) is not copied further
   * (logged as an error), and the generation ends at the next restart. Lower only in tests.
   */
  maxShadowWalFileBytes?: number;
  logger?: Logger;
  /** Fault injection for tests (see CheckpointStepHook). */
  checkpointStepHook?: CheckpointStepHook;
}

export interface GenerationEvent {
  generation: string;
  reason: string;
}

export interface CheckpointEvent {
  mode: CheckpointMode;
  log: number;
  checkpointed: number;
  /** Set when the WAL restarted and a new shadow index began. */
  newIndex?: number;
}

export interface ShipperEvents {
  generation: [GenerationEvent];
  checkpoint: [CheckpointEvent];
  position: [Pos];
  error: [unknown];
}

/** Where the shipper stands: the current shadow file and the WAL cycle it follows. */
interface Current {
  generation: string;
  index: number;
  /** The WAL header this shadow index follows (its first 32 bytes). */
  header: Buffer;
  /** Committed size copied so far. */
  size: number;
  /** A commit past maxShadowWalFileBytes was not copied: the generation cannot continue past a restart. */
  capped: boolean;
}

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
  private db: ShipperDb | undefined;
  private cur: Current | undefined;
  private position: Pos | undefined;
  private durable: Pos | undefined;
  private walIno: bigint | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private scheduler: SyncScheduler | undefined;
  private closed = false;
  private opening: Promise<void> | undefined;
  private reopening = false;
  private snapshotsRunning = 0;
  private lastCheckpointAt = monotonicMs();
  private cappedLogged = false;
  /** A new generation asked for by a replica (requestNewGeneration), taken at the next tick. */
  private generationRequest: { generation: string; reason: string } | undefined;
  private retainFrom: () => number | undefined = () => undefined;
  private describeBehind: () => string[] = () => [];

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
  }

  /** The shadow WAL's size and limit, and how often the limit was reached. */
  shadowWalUsage(): Readonly<ShadowWalUsage> {
    return this.limit.snapshot();
  }

  /** The shipper's position: generation, current shadow index, and its committed size. */
  pos(): Pos | undefined {
    return this.position;
  }

  /**
   * The part of the position that is durable locally (fsynced), after making it so: replicas upload only
   * this, so a power cut can never leave a replica holding bytes the local shadow WAL lost.
   */
  async durablePos(): Promise<Pos | undefined> {
    const target = this.position;
    if (!target || atOrPast(this.durable, target)) return this.durable;
    await this.meta.fsyncShadow(target.generation, target.index).catch((err: unknown) => {
      if (errnoCode(err) !== 'ENOENT') throw err; // a generation that ended meanwhile: nothing to make durable
    });
    if (!atOrPast(this.durable, target) && this.position?.generation === target.generation) this.durable = target;
    return this.durable;
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
    return this.position && from?.generation === this.position.generation ? from : undefined;
  }

  /**
   * Starts a new generation at the next sync, for `reason` (logged with it), if `generation` is still
   * the current one. For a replica that found the remote lineage diverged from local state (the store
   * holds bytes of this generation that the shadow WAL does not: another replicator writing to the same
   * replica, or a local tail lost in a crash): the generation cannot continue there.
   */
  requestNewGeneration(generation: string, reason: string): void {
    if (this.position?.generation === generation) this.generationRequest ??= { generation, reason };
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
    const background = opts.waitForDatabase === false;
    let gaveUp = false;
    const said = { what: undefined as string | undefined };
    const opening = this.openWhenReady(signal, said, () => {
      // Only a database that is missing or locked goes to the background; any other error is the caller's.
      if (background) gaveUp = true;
      return !background;
    }).then(async (opened) => {
      if (!opened || this.closed || signal?.aborted) return;
      await this.sync();
      this.follow();
    });
    this.opening = opening;
    await opening;
    if (gaveUp) {
      this.opening = this.openWhenReady(signal, said, () => true).then(async (opened) => {
        if (!opened || this.closed || signal?.aborted) return;
        await this.sync();
        this.follow();
      });
      this.opening.catch((err: unknown) => this.log.error('cannot replicate the database', { db: this.dbPath, error: describeError(err) }));
    }
  }

  /** Resolves true once opened; false when `keepWaiting` says not to wait (or on close/abort). */
  private async openWhenReady(signal: AbortSignal | undefined, said: { what: string | undefined }, keepWaiting: () => boolean): Promise<boolean> {
    let delay = 100;
    for (;;) {
      if (this.closed || signal?.aborted) return false;
      const exists = await stat(this.dbPath).then(
        () => true,
        (err: unknown) => (errnoCode(err) === 'ENOENT' ? false : Promise.reject(err)),
      );
      let waiting: string | undefined;
      if (!exists) {
        waiting = 'database does not exist yet; waiting for it';
      } else {
        try {
          await this.serial(() => this.init());
          if (said.what) this.log.info('database opened', { db: this.dbPath });
          return true;
        } catch (err) {
          if (!isBusy(err)) throw err;
          waiting = 'database is locked by another connection; waiting';
        }
      }
      if (waiting !== said.what) this.log.warn(waiting, { db: this.dbPath });
      said.what = waiting;
      if (!keepWaiting()) return false;
      await abortableSleep(delay, signal);
      delay = Math.min(delay * 2, Math.max(1000, this.monitorIntervalMs));
    }
  }

  /** Runs one sync now (copy new frames, maybe checkpoint). */
  sync(): Promise<void> {
    return this.serial(() => this.tick(true));
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
      run: (durable) => this.serial(() => this.tick(durable)),
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
      const generation = await this.meta.readGeneration();
      await this.restore.load(generation);
      this.ensureWalHeader(db);
      this.walIno = await this.walInode();

      // Unlocked preparation: repair the current shadow, copy the bulk of what was written meanwhile.
      let candidate: RestoreCandidate | { reason: string } | undefined;
      let index: number | undefined;
      if (generation !== undefined) {
        index = (await this.meta.shadowIndexes(generation)).at(-1);
        const repaired = index === undefined ? undefined : repairShadow(this.meta.shadowWalPath(generation, index));
        if (repaired && repaired.cut > 0) {
          this.log.warn('shadow wal ended past its last commit (a crash); cut back', { db: this.dbPath, generation, index: formatHex8(index!), bytes: repaired.cut });
        }
        const real = readWalHeaderBytesSync(this.walPath);
        if (repaired && real && real.equals(this.meta.shadowHeaderSync(generation, index!) ?? Buffer.alloc(0))) {
          copyToShadow(this.walPath, this.meta.shadowWalPath(generation, index!), { fsync: false, maxSize: this.maxFileBytes });
        }
      } else {
        candidate = await this.restore.prepare(db.file, this.walPath);
      }

      const done = await this.lockedRetrying(db, () => this.initLocked(db, generation, index, candidate));
      if (!done) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      // Consumed either way; a crash before this leaves it to the next start, which finds a generation and drops it.
      if (generation === undefined) await this.restore.dropMarker();
      await this.meta.removeOtherGenerations(this.cur!.generation);
      this.db = db;
    } catch (err) {
      if (this.db !== db) db.close();
      throw err;
    }
  }

  /** The decision of init(), under the write lock. */
  private initLocked(db: ShipperDb, generation: string | undefined, index: number | undefined, candidate: RestoreCandidate | { reason: string } | undefined): void {
    const real = readWalHeaderBytesSync(this.walPath);
    if (!real) throw new ReplicateError('IO', `opening ${this.dbPath}: ${this.walPath} has no WAL header`);
    let reason: string;
    if (generation === undefined) {
      reason = 'no generation exists';
      if (candidate && !('reason' in candidate)) {
        const refused = this.restore.lockedCheck(candidate, this.walPath);
        if (refused === undefined) return this.continueRestoredLocked(db, candidate, real);
        reason += `; ${refused}`;
      } else if (candidate) {
        reason += `; ${candidate.reason}`;
      }
    } else if (index === undefined) {
      reason = 'no shadow wal';
    } else {
      const shadowPath = this.meta.shadowWalPath(generation, index);
      const shadow = this.meta.shadowHeaderSync(generation, index);
      if (!shadow) {
        reason = 'short shadow wal';
      } else if (index >= MAX_INDEX) {
        reason = 'max index exceeded';
      } else if (real.equals(shadow)) {
        const copy = copyToShadow(this.walPath, shadowPath, { maxSize: this.maxFileBytes });
        const pageSize = parseWalHeader(real).pageSize;
        const walSize = frameAlign(this.fileSizeSync(this.walPath), pageSize);
        if (copy.shadowSize > walSize) reason = 'wal truncated by another process';
        else if (!lastFrameMatches(this.walPath, shadowPath, copy.shadowSize, pageSize)) reason = 'wal overwritten by another process';
        else {
          this.setCurrent({ generation, index, header: real, size: copy.shadowSize, capped: copy.capped }, true);
          db.relockRead();
          return;
        }
      } else if (cycleFollowsShadow(this.walPath, shadowPath, real, shadow)) {
        // Stopped right after a WAL restart, before the next shadow index was made (Litestream starts a
        // new generation here): the WAL is the very next cycle and the old one provably ended where the
        // shadow ends, so nothing was lost and the generation continues with a new index.
        this.log.info('init: wal restarted while stopped; continuing the generation', { db: this.dbPath, generation });
        copyToShadow(this.walPath, shadowPath); // only makes the old index durable: the cycle has ended
        this.startIndexLocked(db, generation, index + 1, real);
        return;
      } else {
        reason = 'wal header changed';
      }
      if (reason !== 'no shadow wal') this.log.warn('init: cannot determine last wal position, clearing generation', { db: this.dbPath, reason });
    }
    this.newGenerationLocked(db, reason);
  }

  private continueRestoredLocked(db: ShipperDb, candidate: RestoreCandidate, real: Buffer): void {
    const { marker } = candidate;
    this.meta.removeGenerationDirSync(marker.generation);
    writeContinuedFromSync(this.meta, { generation: marker.generation, index: marker.index, offset: marker.offset });
    this.startIndexLocked(db, marker.generation, marker.index + 1, real);
    this.meta.writeGenerationSync(marker.generation);
    this.restore.continued(candidate, marker.index + 1);
  }

  private async walInode(): Promise<bigint | undefined> {
    return stat(this.walPath, { bigint: true }).then(
      (s) => s.ino,
      () => undefined,
    );
  }

  private fileSizeSync(path: string): number {
    return this.meta.fileSizeSync(path);
  }

  /** Cut the WAL file back to a few checkpoints' worth when our write restarts it. */
  private journalSizeLimit(): number {
    return Math.max(4 << 20, 4096 * Math.max(this.policy.minCheckpointPageCount, 1) * 2);
  }

  /**
   * A WAL shorter than its header (a new database, or one an application TRUNCATE-checkpointed while our
   * read transaction sat in slot 0, i.e. with everything copied): our write gives it a header.
   */
  private ensureWalHeader(db: ShipperDb): void {
    if (readWalHeaderBytesSync(this.walPath)) return;
    const done = db.tryWithWriteLock(this.busyTimeoutMs, () => db.writeSeq(), { commit: true });
    if (!done) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
  }

  /** tryWithWriteLock, retried with backoff for up to the busy timeout × 10 (an application's long write). */
  private async lockedRetrying(db: ShipperDb, fn: () => void): Promise<boolean> {
    const until = monotonicMs() + this.busyTimeoutMs * 10;
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      if (db.tryWithWriteLock(LOCK_WAIT_MS, fn)) return true;
      if (monotonicMs() > until || this.closed) return false;
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  private async tick(durable: boolean): Promise<void> {
    if (this.closed) return;
    if (!this.db || !this.cur) {
      // Not opened yet (start() does that), or a reopen that failed (locked): retried here.
      if (this.reopening) {
        await this.init();
        this.reopening = false;
      }
      return;
    }
    // A WAL replaced or deleted underneath us: our connections still hold the old file; start afresh.
    const ino = await this.walInode();
    if (ino !== this.walIno) {
      this.log.warn('wal file was replaced or deleted by another process; reopening the database', { db: this.dbPath });
      this.db.close();
      this.db = undefined;
      this.cur = undefined;
      this.reopening = true;
      await this.init();
      this.reopening = false;
      return;
    }
    const db = this.db;
    const request = this.generationRequest;
    this.generationRequest = undefined;
    if (request && request.generation === this.cur.generation) this.startNewGeneration(request.reason);
    this.ensureWalHeader(db);
    const real = readWalHeaderBytesSync(this.walPath)!;
    const cur = this.cur;
    if (real.equals(cur.header)) {
      let copy;
      try {
        copy = copyToShadow(this.walPath, this.meta.shadowWalPath(cur.generation, cur.index), { fsync: durable, maxSize: this.maxFileBytes });
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
        this.startNewGeneration('no shadow wal (the shadow file was removed)');
        return;
      }
      this.setCurrent({ ...cur, size: copy.shadowSize, capped: cur.capped || copy.capped }, durable);
    } else if (!db.tryWithWriteLock(LOCK_WAIT_MS, () => this.followRestartLocked(db, real))) {
      this.log.debug('wal restarted; the next index waits for the application\'s write', { db: this.dbPath });
    }
    await this.maybeCheckpoint();
    await this.cleanShadows();
  }

  private setCurrent(cur: Current, durable: boolean): void {
    this.cur = cur;
    if (cur.capped && !this.cappedLogged) {
      this.cappedLogged = true;
      this.log.error('wal cycle reached the largest offset a v0.3 segment name can hold; not copied further until the wal restarts (a long reader may keep it from restarting); the generation then ends', {
        db: this.dbPath,
        generation: cur.generation,
        index: formatHex8(cur.index),
        limit: this.maxFileBytes,
      });
    }
    const pos: Pos = { generation: cur.generation, index: cur.index, offset: cur.size };
    const old = this.position;
    this.position = pos;
    if (durable) this.durable = pos;
    if (!old || comparePos(old, pos) !== 0 || old.generation !== pos.generation) this.emit('position', pos);
  }

  /**
   * Under the write lock, the WAL having restarted (`real` is its new header): the old index gets its
   * last frames (none, by the read-lock rule) and fsync; the new cycle becomes the next index when it is
   * the very next one, else the generation ends. Then the read transaction moves to the new cycle.
   */
  private followRestartLocked(db: ShipperDb, real: Buffer): void {
    const cur = this.cur!;
    const tail = copyToShadow(this.walPath, this.meta.shadowWalPath(cur.generation, cur.index), { maxSize: this.maxFileBytes });
    const old = parseWalHeader(cur.header);
    const next = parseWalHeader(real);
    let reason: string | undefined;
    if (cur.capped || tail.capped) reason = `wal cycle grew past ${this.maxFileBytes} bytes, more than v0.3 segment names can address`;
    else if (!db.readLockTrusted) reason = 'wal restarted while the read lock could not be trusted (after an error)';
    else if (next.pageSize !== old.pageSize) reason = `page size changed (${old.pageSize} -> ${next.pageSize})`;
    else if (next.salt1 !== ((old.salt1 + 1) >>> 0)) reason = `wal restarted to an unexpected cycle (salt-1 ${next.salt1} after ${old.salt1})`;
    else if (cur.index + 1 > MAX_INDEX) reason = 'max index exceeded';
    if (reason) this.newGenerationLocked(db, reason);
    else this.startIndexLocked(db, cur.generation, cur.index + 1, real);
  }

  /** Starts shadow index `index` from the WAL's current cycle and moves the read lock there. */
  private startIndexLocked(db: ShipperDb, generation: string, index: number, header: Buffer): void {
    this.meta.createGenerationDirSync(generation);
    this.cappedLogged = false;
    const copy = initShadow(this.walPath, this.meta.shadowWalPath(generation, index), header, { perms: this.meta.permissions, maxSize: this.maxFileBytes });
    this.setCurrent({ generation, index, header, size: copy.shadowSize, capped: copy.capped }, true);
    db.relockRead();
    this.log.debug('new shadow wal index', { db: this.dbPath, generation, index: formatHex8(index) });
  }

  /** A new generation from the WAL's current cycle, under the write lock (its shadow starts at index 0). */
  private newGenerationLocked(db: ShipperDb, reason: string): void {
    const header = readWalHeaderBytesSync(this.walPath);
    if (!header) throw new ReplicateError('IO', `starting a generation of ${this.dbPath}: ${this.walPath} has no WAL header`);
    const generation = this.meta.newGenerationNameSync();
    this.restore.continuedFrom = undefined;
    this.cappedLogged = false;
    this.startIndexLocked(db, generation, 0, header);
    this.meta.writeGenerationSync(generation);
    this.limit.reset(this.cur!.size);
    this.log.info('new generation', { db: this.dbPath, generation, reason });
    this.emit('generation', { generation, reason } satisfies GenerationEvent);
  }

  /** A new generation decided outside the lock (a removed shadow file, the shadow WAL limit). */
  private startNewGeneration(reason: string): void {
    const db = this.db!;
    if (!db.tryWithWriteLock(this.busyTimeoutMs, () => this.newGenerationLocked(db, reason))) {
      throw new ReplicateError('IO', `starting a new generation of ${this.dbPath} (${reason}): the database stayed locked`);
    }
  }

  private async maybeCheckpoint(): Promise<void> {
    const cur = this.cur;
    if (this.snapshotsRunning > 0 || !cur || !this.db) return;
    const now = monotonicMs();
    const mode = checkpointMode(this.policy, { pageSize: this.db.pageSize, walSize: cur.size, shadowSize: cur.size, idleMs: now - this.lastCheckpointAt });
    if (!mode || !this.throttle.allowed(now)) return;
    this.checkpoint(mode);
  }

  /**
   * A checkpoint that loses nothing. Under the write lock (no commit, no restart meanwhile): every
   * committed frame goes to the shadow (fsynced), our read transaction is released, a PASSIVE checkpoint
   * backfills, and the read transaction is taken again at the WAL's end — in slot 0 when the WAL was
   * fully backfilled, so it does not hold up the restart, and blocks every later backfill, so at most one
   * restart can follow. Then, if everything was backfilled, our seq write in a transaction of its own
   * (SQLite restarts the WAL only for a writer whose transaction began on a fully backfilled WAL) restarts
   * the WAL and cuts the file back (journal_size_limit); an application commit that gets in first
   * restarts it instead, which is as good. The next index starts under the write lock again.
   * Litestream releases its read lock and checkpoints without the write lock, so a transaction committed
   * between its copy and its checkpoint can be backfilled and overwritten without ever being copied.
   */
  private checkpoint(mode: CheckpointMode): void {
    const db = this.db!;
    const before = this.cur!;
    const now = monotonicMs();
    const shadowPath = this.meta.shadowWalPath(before.generation, before.index);
    const out = db.tryWithWriteLock(LOCK_WAIT_MS, () => {
      const copy = copyToShadow(this.walPath, shadowPath, { maxSize: this.maxFileBytes });
      this.setCurrent({ ...before, size: copy.shadowSize, capped: before.capped || copy.capped }, true);
      db.step('copied');
      db.releaseRead();
      const result = db.passiveCheckpoint();
      db.step('checkpointed');
      db.relockRead();
      db.step('relocked');
      return result;
    });
    if (!out) {
      this.throttle.recordBusy(now);
      this.log.debug('checkpoint skipped: the application holds the write lock', { db: this.dbPath, mode });
      return;
    }
    db.step('unlocked');
    this.lastCheckpointAt = now;
    const result = out.value;
    if (result.busy === 0 && result.log > 0 && result.checkpointed === result.log) {
      db.tryWithWriteLock(LOCK_WAIT_MS, () => db.writeSeq(), { commit: true });
      db.step('committed');
    }
    const real = readWalHeaderBytesSync(this.walPath);
    const restarted = real !== undefined && !real.equals(before.header);
    let newIndex: number | undefined;
    if (restarted) {
      if (db.tryWithWriteLock(LOCK_WAIT_MS, () => this.followRestartLocked(db, real)) && this.cur!.generation === before.generation) newIndex = this.cur!.index;
    } else {
      const copy = copyToShadow(this.walPath, shadowPath, { fsync: false, maxSize: this.maxFileBytes }); // our own seq frame, if any
      this.setCurrent({ ...this.cur!, size: copy.shadowSize, capped: this.cur!.capped || copy.capped }, false);
    }
    this.throttle.record(now, restarted);
    const event: CheckpointEvent = { mode, log: result.log, checkpointed: result.checkpointed, ...(newIndex !== undefined ? { newIndex } : {}) };
    if (!restarted && result.log !== result.checkpointed) {
      this.log.debug('checkpoint could not backfill every frame (readers hold older snapshots)', { db: this.dbPath, ...result });
    }
    this.log.debug('checkpoint', { db: this.dbPath, ...event });
    this.emit('checkpoint', event);
  }

  private async cleanShadows(): Promise<void> {
    const cur = this.cur;
    if (!cur) return;
    const needed = this.retainFrom();
    // One older file is kept, as Litestream does. One directory listing per sync serves both steps.
    const left = needed !== undefined ? await this.meta.removeShadowsBelow(cur.generation, needed - 1) : await this.meta.shadowIndexes(cur.generation);
    const sizes = await Promise.all(left.map(async (i) => (await this.meta.shadowSize(cur.generation, i)) ?? 0));
    const reason = this.limit.check(cur.generation, sizes, this.describeBehind);
    if (reason) {
      this.startNewGeneration(reason);
      await this.meta.removeOtherGenerations(this.cur!.generation);
    }
  }

  /**
   * Runs `fn` while no checkpoint of ours can run (so the WAL cannot restart and the database file holds
   * every frame of the indexes before the current one). Returns what `fn` returns.
   */
  async withSnapshotLock<T>(fn: (pos: Pos) => Promise<T>): Promise<T> {
    this.snapshotsRunning++;
    try {
      await this.sync();
      const pos = this.position;
      if (!pos) throw new Error('no generation yet: nothing to snapshot');
      return await fn(pos);
    } finally {
      this.snapshotsRunning--;
    }
  }

  /** The database file's bytes, through the shipper's one descriptor (never a new one: see database-file.ts). */
  readDatabase(chunkSize?: number): AsyncGenerator<Buffer> {
    if (!this.db) throw new Error('the database is not open');
    return this.db.file.chunks(chunkSize);
  }

  /** The live database's page digest at a position the replicas will reach, for validation (validation-pin.ts). */
  async digestAtPosition(): Promise<PinnedDigest> {
    return pinAndDigest({
      serial: (fn) => this.serial(fn),
      sync: () => this.sync(),
      pinLocked: (pin) => {
        const db = this.db;
        const cur = this.cur;
        if (this.closed || !db || !cur) throw new Error('the database is not open');
        const out = db.tryWithWriteLock(this.busyTimeoutMs, () => {
          const real = readWalHeaderBytesSync(this.walPath);
          // Restarted since the last sync: let a sync start the next index first, then pin again.
          if (!real || !real.equals(cur.header)) return undefined;
          const { shadowSize } = copyToShadow(this.walPath, this.meta.shadowWalPath(cur.generation, cur.index), { maxSize: this.maxFileBytes });
          this.setCurrent({ ...cur, size: shadowSize }, true);
          pin();
          return this.position!;
        });
        return out?.value;
      },
      dbPath: this.dbPath,
      walPath: this.walPath,
      file: () => this.db!.file,
      busyTimeoutMs: this.busyTimeoutMs,
    });
  }

  /** Stops following the database and closes its connections (a final sync first). */
  async close(): Promise<void> {
    if (this.closed) return;
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

/** Whether `a` is at or past `b` in the same generation (positions of two generations do not compare). */
function atOrPast(a: Pos | undefined, b: Pos): boolean {
  return a !== undefined && a.generation === b.generation && (a.index > b.index || (a.index === b.index && a.offset >= b.offset));
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

