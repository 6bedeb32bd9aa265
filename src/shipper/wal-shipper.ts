/**
 * The WAL shipper: the only code that talks to the live database. It follows the `-wal` file (file
 * watching, with a poll as a safety net), copies committed frames into the shadow WAL in order,
 * decides checkpoints, and starts a new generation exactly when continuity with the real WAL is lost
 * (Litestream's triggers, spec §5.4). It knows nothing of uploads: replicas read its shadow WAL and
 * listen to its events.
 */
import { EventEmitter } from 'node:events';
import { createReadStream, watch, type FSWatcher } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import Database from 'better-sqlite3';
import { describeError, errnoCode } from '../errors.js';
import { MAX_INDEX, formatHex8 } from '../layout.js';
import { nullLogger, type Logger } from '../logger.js';
import type { Pos } from '../pos.js';
import { WAL_HEADER_SIZE, WalScanner, frameAlign, frameSize, parseWalFrameHeader, parseWalHeader } from '../sqlite/wal-format.js';
import { DEFAULT_CHECKPOINT_POLICY, checkpointMode, type CheckpointMode, type CheckpointPolicy } from './checkpoint-policy.js';
import { ShipperDb } from './db-connection.js';
import { MetaDir, defaultMetaPath } from './meta.js';
import {
  fileDigest,
  markerPos,
  readContinuedFrom,
  readRestoreMarker,
  removeRestoreMarker,
  writeContinuedFrom,
  type RestoreMarker,
} from './restore-marker.js';
import { copyToShadow, initShadow, lastFrameMatches, readWalHeaderBytes, readWalHeaderBytesSync } from './shadow-wal.js';
import { digestLiveDatabase, type DatabaseDigest } from './database-digest.js';

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
  logger?: Logger;
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

const MIN_SYNC_GAP_MS = 15;
export const DEFAULT_MAX_SHADOW_WAL_BYTES = 1024 ** 3;

/** The local shadow WAL's footprint, for monitoring (a gauge and a counter). */
export interface ShadowWalUsage {
  /** Bytes of shadow WAL of the current generation, as of the last sync that measured them. */
  bytes: number;
  /** `maxShadowWalBytes` (0: no limit). */
  limit: number;
  /** How many times the limit was reached (each started a new generation). */
  limitReached: number;
}

type Verified = { reason: string } | { generation: string; index: number; shadowSize: number; restart: boolean; walSize: number };

/**
 * Asked before a generation is continued after a restore: undefined when this replica ends exactly at the
 * restored position (nobody wrote to the generation since), else why continuity does not hold.
 */
export type RestoreCheck = (marker: RestoreMarker) => Promise<string | undefined>;

type Started = { generation: string; index: number; shadowSize: number };

export class WalShipper extends EventEmitter {
  readonly dbPath: string;
  readonly walPath: string;
  readonly meta: MetaDir;
  private readonly log: Logger;
  private readonly policy: CheckpointPolicy;
  private readonly monitorIntervalMs: number;
  private readonly busyTimeoutMs: number;
  private db: ShipperDb | undefined;
  private position: Pos | undefined;
  private walIno: bigint | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private pending = false;
  private closed = false;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private snapshotsRunning = 0;
  private retainFrom: () => number | undefined = () => undefined;
  private describeBehind: () => string[] = () => [];
  private readonly maxShadowWalBytes: number;
  private readonly usage: ShadowWalUsage;
  private halfWarned = false;
  private readonly restoreChecks = new Map<string, RestoreCheck>();
  /** What init() found about a restore, for the first tick that has no generation. */
  private restorePending: { marker: RestoreMarker } | { reason: string } | undefined;
  private continuedFrom: Pos | undefined;
  private readonly continueAfterRestoreEnabled: boolean;
  /** A new generation asked for by a replica (requestNewGeneration), taken at the next tick. */
  private generationRequest: { generation: string; reason: string } | undefined;

  constructor(opts: ShipperOptions) {
    super();
    this.dbPath = opts.dbPath;
    this.walPath = `${opts.dbPath}-wal`;
    this.meta = new MetaDir(opts.metaPath ?? defaultMetaPath(opts.dbPath));
    this.log = opts.logger ?? nullLogger;
    this.policy = { ...DEFAULT_CHECKPOINT_POLICY, ...opts.checkpoint };
    this.monitorIntervalMs = opts.monitorIntervalMs ?? 1000;
    this.busyTimeoutMs = opts.busyTimeoutMs ?? 1000;
    this.maxShadowWalBytes = opts.maxShadowWalBytes ?? DEFAULT_MAX_SHADOW_WAL_BYTES;
    this.continueAfterRestoreEnabled = opts.continueAfterRestore ?? false;
    this.usage = { bytes: 0, limit: this.maxShadowWalBytes, limitReached: 0 };
  }

  /** The shadow WAL's size and limit, and how often the limit was reached. */
  shadowWalUsage(): Readonly<ShadowWalUsage> {
    return { ...this.usage };
  }

  /** The shipper's position: generation, current shadow index, and its committed size. */
  pos(): Pos | undefined {
    return this.position;
  }

  get pageSize(): number | undefined {
    return this.db?.pageSize;
  }

  /**
   * Each replica registers a check that must pass before a generation is continued after a restore: the
   * shipper cannot know by itself whether someone else wrote to that generation since.
   */
  addRestoreCheck(name: string, check: RestoreCheck): void {
    this.restoreChecks.set(name, check);
  }

  /**
   * When the current generation was continued after a restore: the replica position it resumed from.
   * Its index has no shadow file here; a replica that ends exactly there moves on to the next index.
   */
  restoredFrom(): Pos | undefined {
    return this.position && this.continuedFrom?.generation === this.position.generation ? this.continuedFrom : undefined;
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

  /**
   * Replicas tell the shipper the lowest shadow index they still need, and (for the error when the
   * shadow WAL limit is reached) which of them are behind.
   */
  setRetention(fn: () => number | undefined, behind?: () => string[]): void {
    this.retainFrom = fn;
    if (behind) this.describeBehind = behind;
  }

  /** Opens the database (waiting while it does not exist), syncs once, and starts following it. */
  async start(signal?: AbortSignal): Promise<void> {
    let warned = false;
    for (;;) {
      if (this.closed || signal?.aborted) return;
      const exists = await stat(this.dbPath).then(
        () => true,
        (err: unknown) => (errnoCode(err) === 'ENOENT' ? false : Promise.reject(err)),
      );
      if (exists) break;
      if (!warned) this.log.warn('database does not exist yet; waiting for it', { db: this.dbPath });
      warned = true;
      await new Promise((r) => setTimeout(r, Math.max(100, Math.min(this.monitorIntervalMs || 1000, 1000))));
    }
    await this.serial(() => this.init());
    await this.sync();
    this.follow();
  }

  /** Runs one sync now (copy new frames, maybe checkpoint); concurrent calls are coalesced. */
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
    // A busy database fires a watch event per write: coalesce them into at most one sync every
    // MIN_SYNC_GAP_MS, which bounds the shipper's CPU while keeping commit-to-copy latency in milliseconds.
    let lastSyncAt = 0;
    const wake = () => {
      if (this.pending || this.closed) return;
      this.pending = true;
      const delay = Math.max(0, lastSyncAt + MIN_SYNC_GAP_MS - Date.now());
      setTimeout(() => {
        lastSyncAt = Date.now();
        this.pending = false;
        this.serial(() => this.tick(false)).catch((err: unknown) => {
          this.log.error('sync failed', { db: this.dbPath, error: describeError(err) });
          if (this.listenerCount('error') > 0) this.emit('error', err);
        });
      }, delay);
    };
    try {
      const walName = basename(this.walPath);
      const dbName = basename(this.dbPath);
      this.watcher = watch(dirname(this.dbPath), { persistent: false }, (_event, name) => {
        if (name === walName || name === dbName) wake();
      });
      this.watcher.on('error', () => undefined); // the poll below still runs
    } catch (err) {
      this.log.warn('file watching unavailable; polling only', { error: describeError(err) });
    }
    if (this.monitorIntervalMs > 0) {
      this.timer = setInterval(() => {
        this.sync().catch((err: unknown) => {
          this.log.error('sync failed', { db: this.dbPath, error: describeError(err) });
          if (this.listenerCount('error') > 0) this.emit('error', err);
        });
      }, this.monitorIntervalMs);
      this.timer.unref();
    }
  }

  private async init(): Promise<void> {
    this.db = ShipperDb.open(this.dbPath, { busyTimeoutMs: this.busyTimeoutMs });
    this.walIno = await this.walInode();
    await this.meta.adoptPermissionsOf(this.dbPath);
    await this.meta.ensure();
    await this.meta.removeTempFiles();
    const generation = await this.meta.readGeneration();
    if (generation !== undefined) {
      // Continue the generation only if the real WAL is still the one the last shadow file follows.
      const index = (await this.meta.shadowIndexes(generation)).at(-1);
      const real = await readWalHeaderBytes(this.walPath);
      const shadow = index === undefined ? undefined : await readWalHeaderBytes(this.meta.shadowWalPath(generation, index));
      const shadowPath = index === undefined ? undefined : this.meta.shadowWalPath(generation, index);
      if (real && shadow && !real.equals(shadow) && shadowPath && (await cycleFollowsShadow(this.walPath, shadowPath, real, shadow))) {
        // Stopped right after a WAL restart, before the next shadow index was made (Litestream starts a
        // new generation here): the WAL is the very next cycle and the old one provably ended where the
        // shadow ends, so nothing was lost and the generation continues with a new index.
        this.log.info('init: wal restarted while stopped; continuing the generation', { db: this.dbPath, generation });
      } else if (!real || !shadow || !real.equals(shadow)) {
        this.log.warn('init: cannot determine last wal position, clearing generation', {
          db: this.dbPath,
          reason: !real ? 'no wal header' : !shadow ? 'no shadow wal' : 'wal header changed',
        });
        await this.meta.clearGeneration();
      } else {
        await this.meta.removeOtherGenerations(generation);
      }
    }
    await this.loadRestoreMarker();
  }

  /**
   * Spec §5.4 starts a new generation whenever none exists, so Litestream always does after a restore.
   * A restore of a generation's latest state leaves a marker (restore-marker.ts); with it the first tick
   * can continue that generation when continuity provably holds. A marker found while a generation
   * continues anyway is stale and removed.
   */
  private async loadRestoreMarker(): Promise<void> {
    const generation = await this.meta.readGeneration();
    if (generation !== undefined) {
      this.continuedFrom = await readContinuedFrom(this.meta, generation);
      if (await readRestoreMarker(this.meta).catch(() => true)) {
        this.log.info('restore marker ignored: the current generation continues', { db: this.dbPath, generation });
        await this.dropRestoreMarker();
      }
      return;
    }
    try {
      const marker = await readRestoreMarker(this.meta);
      if (marker && !this.continueAfterRestoreEnabled) {
        this.restorePending = { reason: `restore of generation ${marker.generation} not continued: continue-after-restore is off` };
        await this.dropRestoreMarker();
      } else {
        this.restorePending = marker ? { marker } : { reason: 'no restore marker' };
      }
    } catch (err) {
      this.restorePending = { reason: describeError(err) };
    }
  }

  private async walInode(): Promise<bigint | undefined> {
    return stat(this.walPath, { bigint: true }).then(
      (s) => s.ino,
      () => undefined,
    );
  }

  private async tick(durable: boolean): Promise<void> {
    if (this.closed || !this.db) return;
    const db = this.db;
    // A WAL replaced or deleted underneath us: our connections still hold the old file; start afresh.
    const ino = await this.walInode();
    if (this.walIno !== undefined && ino !== this.walIno) {
      this.log.warn('wal file was replaced or deleted by another process; reopening the database', { db: this.dbPath });
      db.close();
      this.db = ShipperDb.open(this.dbPath, { busyTimeoutMs: this.busyTimeoutMs });
      this.walIno = await this.walInode();
      return this.tick(durable);
    }
    this.walIno = ino;
    db.acquireReadLock(); // normally held already; never follow the WAL without it

    const walSizeBefore = await fileSize(this.walPath);
    if (walSizeBefore < WAL_HEADER_SIZE) {
      this.db.bumpSeq(); // the WAL needs a header before anything can be followed
      this.walIno = await this.walInode();
    }

    let v = await this.verify();
    const request = this.generationRequest;
    this.generationRequest = undefined;
    if (request && !('reason' in v) && v.generation === request.generation) v = { reason: request.reason };
    let generation: string;
    let index: number;
    let shadowSize: number;
    if ('reason' in v) {
      const pending = v.reason === 'no generation exists' ? this.restorePending : undefined;
      this.restorePending = undefined;
      ({ generation, index, shadowSize } = pending ? await this.afterRestore(v.reason, pending) : await this.newGeneration(v.reason));
    } else {
      ({ generation, index } = v);
      // No fsync per copy (a busy database syncs hundreds of times a second and would pay an fsync each
      // time): the frames are still in the WAL; the copy before a checkpoint and the periodic poll fsync.
      shadowSize = copyToShadow(this.walPath, this.meta.shadowWalPath(generation, index), { fsync: durable }).shadowSize;
      if (v.restart) {
        // Restarted by someone else: the rest of the old cycle is gone or copied; follow the new one.
        ({ index, shadowSize } = this.startNextIndex(generation, index));
      }
    }
    this.setPosition({ generation, index, offset: shadowSize });

    if (this.snapshotsRunning === 0) {
      const dbIdleMs = Date.now() - (await stat(this.dbPath)).mtimeMs;
      const mode = checkpointMode(this.policy, { pageSize: this.db.pageSize, walSize: walSizeBefore, shadowSize, dbIdleMs });
      if (mode) await this.checkpoint(mode, generation, index);
    }
    await this.cleanShadows(generation);
  }

  private setPosition(p: Pos): void {
    const old = this.position;
    this.position = p;
    if (!old || old.generation !== p.generation || old.index !== p.index || old.offset !== p.offset) this.emit('position', p);
  }

  private async verify(): Promise<Verified> {
    const generation = await this.meta.readGeneration();
    if (generation === undefined) return { reason: 'no generation exists' };
    const index = (await this.meta.shadowIndexes(generation)).at(-1);
    if (index === undefined) return { reason: 'no shadow wal' };
    if (index >= MAX_INDEX) return { reason: 'max index exceeded' };
    const shadowPath = this.meta.shadowWalPath(generation, index);
    const pageSize = this.db!.pageSize;
    const shadowSize = frameAlign((await this.meta.shadowSize(generation, index)) ?? 0, pageSize);
    if (shadowSize < WAL_HEADER_SIZE) return { reason: 'short shadow wal' };
    const walSize = frameAlign(await fileSize(this.walPath), pageSize);
    if (shadowSize > walSize) return { reason: 'wal truncated by another process' };
    const [real, shadow] = await Promise.all([readWalHeaderBytes(this.walPath), readWalHeaderBytes(shadowPath)]);
    const restart = !real || !shadow || !real.equals(shadow);
    if (shadowSize === WAL_HEADER_SIZE && restart) return { reason: 'wal header only, mismatched' };
    if (!(await lastFrameMatches(this.walPath, shadowPath, shadowSize, pageSize))) return { reason: 'wal overwritten by another process' };
    return { generation, index, shadowSize, restart, walSize };
  }

  /** The first generation of this run when there was none: the restored one if provably safe, else a new one. */
  private async afterRestore(why: string, pending: { marker: RestoreMarker } | { reason: string }): Promise<Started> {
    if ('reason' in pending) return this.newGeneration(`${why}; ${pending.reason}`);
    const { marker } = pending;
    // Any failure on the way (a database locked too long, an unreadable file) only costs the continuity.
    const result = await this.continueAfterRestore(marker).catch((err: unknown) => ({ reason: describeError(err) }));
    const started = 'reason' in result ? await this.newGeneration(`${why}; restore of generation ${marker.generation} not continued: ${result.reason}`) : result;
    // Consumed either way; a crash before this leaves it to the next start, which finds a generation and drops it.
    await this.dropRestoreMarker();
    return started;
  }

  /** Best effort: a marker left behind is dropped at the next start, which finds a generation. */
  private async dropRestoreMarker(): Promise<void> {
    await removeRestoreMarker(this.meta).catch((err: unknown) =>
      this.log.warn('cannot remove the restore marker', { path: this.meta.restoreMarkerPath(), error: describeError(err) }),
    );
  }

  /**
   * Continues the restored generation at shadow index marker.index + 1, from the current WAL header, if:
   * - every replica ends exactly at the restored position (nobody wrote to the generation since);
   * - the database file is byte-identical to the restored one. Then the replica's state at that position
   *   is the database file, and the WAL's current cycle holds everything written since (a checkpoint
   *   that changed the file, including the one SQLite runs when the last connection closes, may have
   *   moved writes out of the WAL, so it breaks continuity);
   * - the WAL did not restart between reading its header and hashing the database: the header is read
   *   before the hash and again under the write lock (so no restart can follow) when the shadow starts.
   * Frames the current cycle backfills meanwhile are harmless: they are also in the WAL we copy from.
   */
  private async continueAfterRestore(marker: RestoreMarker): Promise<Started | { reason: string }> {
    const generation = marker.generation;
    const index = marker.index + 1;
    if (index > MAX_INDEX) return { reason: 'max index exceeded' };
    if (this.restoreChecks.size === 0) return { reason: 'no replica to confirm the restored position' };
    for (const [name, check] of this.restoreChecks) {
      const refused = await check(marker).catch((err: unknown) => `replica ${name} could not be checked: ${describeError(err)}`);
      if (refused !== undefined) return { reason: refused };
    }
    const before = await readWalHeaderBytes(this.walPath);
    if (!before) return { reason: 'no wal header' };
    const { size, sha256 } = await fileDigest(this.dbPath);
    if (size !== marker.size || sha256 !== marker.sha256) return { reason: 'database changed since the restore' };

    await this.meta.removeGenerationDir(generation);
    await this.meta.createGenerationDir(generation);
    const shadowPath = this.meta.shadowWalPath(generation, index);
    const copied = this.db!.withWriteLock(() => {
      const now = readWalHeaderBytesSync(this.walPath);
      return now && now.equals(before) ? initShadow(this.walPath, shadowPath, now, this.meta.permissions) : undefined;
    });
    if (!copied) {
      await this.meta.removeGenerationDir(generation);
      return { reason: 'wal restarted while checking the restore' };
    }
    const from = markerPos(marker);
    await writeContinuedFrom(this.meta, from);
    await this.meta.writeGeneration(generation);
    await this.meta.removeOtherGenerations(generation);
    this.continuedFrom = from;
    this.log.info(`continuing generation ${generation} after restore`, {
      db: this.dbPath,
      generation,
      index: formatHex8(index),
      restored: `${formatHex8(marker.index)}:${marker.offset}`,
      replica: marker.location,
    });
    return { generation, index, shadowSize: copied.shadowSize };
  }

  private async newGeneration(reason: string): Promise<Started> {
    const generation = await this.meta.newGenerationName();
    await this.meta.createGenerationDir(generation);
    const header = await readWalHeaderBytes(this.walPath);
    if (!header) throw new Error(`cannot start a generation: ${this.walPath} has no WAL header`);
    const { shadowSize } = initShadow(this.walPath, this.meta.shadowWalPath(generation, 0), header, this.meta.permissions);
    await this.meta.writeGeneration(generation);
    await this.meta.removeOtherGenerations(generation);
    this.log.info('new generation', { db: this.dbPath, generation, reason });
    this.emit('generation', { generation, reason } satisfies GenerationEvent);
    return { generation, index: 0, shadowSize };
  }

  /** Under the write lock: copies the old cycle's tail, then starts shadow index+1 from the new WAL header. */
  private startNextIndex(generation: string, index: number): { index: number; shadowSize: number } {
    return this.db!.withWriteLock(() => this.startNextIndexLocked(generation, index));
  }

  /** The same, for a caller that holds the write lock already (synchronous: see copyToShadow). */
  private startNextIndexLocked(generation: string, index: number): { index: number; shadowSize: number } {
    copyToShadow(this.walPath, this.meta.shadowWalPath(generation, index));
    const header = readWalHeaderBytesSync(this.walPath);
    if (!header) throw new Error(`${this.walPath} lost its WAL header`);
    const next = index + 1;
    const { shadowSize } = initShadow(this.walPath, this.meta.shadowWalPath(generation, next), header, this.meta.permissions);
    this.log.debug('new shadow wal index', { db: this.dbPath, generation, index: formatHex8(next) });
    return { index: next, shadowSize };
  }

  private async checkpoint(mode: CheckpointMode, generation: string, index: number): Promise<void> {
    const db = this.db!;
    const before = await readWalHeaderBytes(this.walPath);
    const shadowPath = this.meta.shadowWalPath(generation, index);
    let pos: Pos = { generation, index, offset: 0 };
    let newIndex: number | undefined;
    const result = db.checkpoint(
      () => {
        copyToShadow(this.walPath, shadowPath);
      },
      () => {
        const after = readWalHeaderBytesSync(this.walPath);
        if (before && after && !before.equals(after)) {
          const next = this.startNextIndexLocked(generation, index);
          newIndex = next.index;
          pos = { generation, index: next.index, offset: next.shadowSize };
        } else {
          // Not restarted (readers hold older snapshots): still copy our own seq frame.
          pos = { generation, index, offset: copyToShadow(this.walPath, shadowPath).shadowSize };
        }
      },
      100,
    );
    if (!result) {
      this.log.debug('checkpoint skipped: the application holds the write lock', { db: this.dbPath, mode });
      return;
    }
    this.setPosition(pos);
    const event: CheckpointEvent = { mode, log: result.log, checkpointed: result.checkpointed, ...(newIndex !== undefined ? { newIndex } : {}) };
    if (newIndex === undefined && result.log !== result.checkpointed) {
      this.log.debug('checkpoint could not backfill every frame (readers hold older snapshots)', { db: this.dbPath, ...result });
    }
    this.log.debug('checkpoint', { db: this.dbPath, ...event });
    this.emit('checkpoint', event);
  }

  private async cleanShadows(generation: string): Promise<void> {
    const needed = this.retainFrom();
    // One older file is kept, as Litestream does. One directory listing per sync serves both steps.
    const left = needed !== undefined ? await this.meta.removeShadowsBelow(generation, needed - 1) : await this.meta.shadowIndexes(generation);
    await this.enforceShadowLimit(generation, left);
  }

  /**
   * A replica that stays down keeps every shadow index since its last upload (Litestream's too), which
   * would fill the disk without a word. At half the limit this warns; at the limit it is an error and a
   * new generation starts: the old generation's shadow files are removed, and a replica that comes back
   * starts the new generation with a snapshot. Its point-in-time history has a break there; nothing
   * committed is lost (the new generation's snapshot holds it).
   */
  private async enforceShadowLimit(generation: string, indexes: readonly number[]): Promise<void> {
    let bytes = 0;
    for (const i of indexes) bytes += (await this.meta.shadowSize(generation, i)) ?? 0;
    this.usage.bytes = bytes;
    // While every replica keeps up there are at most three files (see cleanShadows): nothing to bound.
    if (indexes.length <= 3) {
      this.halfWarned = false;
      return;
    }
    const limit = this.maxShadowWalBytes;
    if (limit <= 0) return;
    const behind = this.describeBehind().join(', ') || 'unknown';
    if (bytes >= limit) {
      this.usage.limitReached++;
      this.log.error('shadow wal limit reached: replicas are too far behind; starting a new generation so the disk does not fill', {
        db: this.dbPath,
        generation,
        bytes,
        limit,
        indexes: indexes.length,
        behind,
      });
      this.halfWarned = false;
      const next = await this.newGeneration(`shadow wal limit reached (${bytes} bytes >= ${limit}) while replicas were behind: ${behind}`);
      this.setPosition({ generation: next.generation, index: next.index, offset: next.shadowSize });
      this.usage.bytes = next.shadowSize;
    } else if (bytes >= limit / 2 && !this.halfWarned) {
      this.halfWarned = true;
      this.log.warn('shadow wal is growing: replicas are behind', { db: this.dbPath, generation, bytes, limit, behind });
    }
  }

  /**
   * Runs `fn` while no checkpoint can run (so the WAL cannot restart and the database file holds every
   * frame of the indexes before the current one). Returns what `fn` returns.
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

  /**
   * The live database's page digest at a position the replicas will reach, for validation.
   *
   * Only the pin holds the application up: under the write lock the new frames are copied to the shadow
   * WAL (so the position is one the replicas upload to) and a read transaction is begun on a connection
   * of its own, fixing what it sees at exactly that position. The digest is then read with no lock that
   * writers wait on — the read transaction only keeps checkpoints from going past it — so the stall is
   * one incremental copy, where Litestream forces a RESTART checkpoint (waiting for every reader and
   * copying the whole WAL into the database) and reads the file while checkpoints are held off.
   */
  async digestAtPosition(): Promise<{ pos: Pos; digest: DatabaseDigest }> {
    for (let attempt = 0; ; attempt++) {
      const pinned = await this.serial(async () => {
        if (this.closed || !this.db || !this.position) throw new Error('the database is not open');
        const db = this.db;
        const { generation, index } = this.position;
        const shadowPath = this.meta.shadowWalPath(generation, index);
        const reader = new Database(this.dbPath, { readonly: true, fileMustExist: true, timeout: this.busyTimeoutMs });
        try {
          const end = db.withWriteLock(() => {
            const real = readWalHeaderBytesSync(this.walPath);
            const shadow = readWalHeaderBytesSync(shadowPath);
            // Restarted since the last sync: let a sync start the next index first, then pin again.
            if (!real || !shadow || !real.equals(shadow)) return undefined;
            const { shadowSize } = copyToShadow(this.walPath, shadowPath);
            reader.exec('BEGIN');
            reader.prepare('SELECT COUNT(1) FROM sqlite_master').pluck().get();
            return shadowSize;
          });
          if (end === undefined) {
            reader.close();
            return undefined;
          }
          const pos: Pos = { generation, index, offset: end };
          this.setPosition(pos);
          return { pos, reader };
        } catch (err) {
          reader.close();
          throw err;
        }
      });
      if (!pinned) {
        if (attempt >= 3) throw new Error('the WAL keeps restarting; cannot pin a position to validate');
        await this.sync();
        continue;
      }
      try {
        return { pos: pinned.pos, digest: await digestLiveDatabase(this.dbPath, this.walPath, pinned.pos.offset) };
      } finally {
        pinned.reader.close(); // read-only: closing never checkpoints or deletes the WAL
      }
    }
  }

  /** Stops following the database and closes its connections (a final sync first). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    await this.sync().catch((err: unknown) => this.log.warn('final sync failed', { db: this.dbPath, error: describeError(err) }));
    this.closed = true;
    await this.serial(async () => {
      this.db?.close();
      this.db = undefined;
    });
  }
}

/**
 * Whether the real WAL's current cycle is the immediate successor of the shadow's cycle (SQLite adds one
 * to salt-1 on every restart) and the old cycle ended exactly where the
 * shadow ends: the new cycle has not reached that offset, the file was not truncated below it, and no
 * old-cycle frame continues the shadow's checksum chain there.
 */
async function cycleFollowsShadow(walPath: string, shadowPath: string, realBytes: Buffer, shadowBytes: Buffer): Promise<boolean> {
  let real;
  let old;
  try {
    real = parseWalHeader(realBytes);
    old = parseWalHeader(shadowBytes);
  } catch {
    return false;
  }
  if (real.pageSize !== old.pageSize) return false;
  // Not the checkpoint sequence: each connection counts its own, so it is not monotonic across them.
  if (real.salt1 !== ((old.salt1 + 1) >>> 0)) return false;
  const shadowSize = frameAlign(await fileSize(shadowPath), old.pageSize);
  if ((await fileSize(walPath)) < shadowSize) return false;
  const scanner = new WalScanner();
  for await (const chunk of createReadStream(walPath, { highWaterMark: 1 << 20 })) {
    scanner.update(chunk as Buffer);
    if (scanner.result().stopReason !== undefined) break;
  }
  if (scanner.result().validSize > shadowSize - (shadowSize > WAL_HEADER_SIZE ? frameSize(old.pageSize) : 0)) return false;
  // An old-cycle frame right after the shadow's end would mean frames were committed and never copied.
  const next = Buffer.alloc(frameSize(old.pageSize));
  const h = await open(walPath, 'r');
  const { bytesRead } = await h.read(next, 0, next.length, shadowSize).finally(() => h.close());
  if (bytesRead === next.length) {
    const fh = parseWalFrameHeader(next);
    if (fh.salt1 === old.salt1 && fh.salt2 === old.salt2) return false;
  }
  return true;
}

async function fileSize(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.size,
    (err: unknown) => (errnoCode(err) === 'ENOENT' ? 0 : Promise.reject(err)),
  );
}
