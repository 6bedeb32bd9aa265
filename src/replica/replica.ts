/**
 * One replica destination: follows the shipper's position and uploads what is new — a snapshot at the
 * start of a generation, then WAL segments named by their exact start offset (Litestream's layout, so
 * Litestream can restore and resume them). The position lives in memory and is recomputed from the
 * remote after a restart or any error (the listing is the source of truth), which is also how a
 * generation started by Litestream is resumed.
 */
import { EventEmitter } from 'node:events';
import { open } from 'node:fs/promises';
import { collect, type ReplicaClient, type SnapshotInfo } from '../client/replica-client.js';
import { describeError, errnoCode, isReplicateError, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import { StopSignal } from '../internal/stop-signal.js';
import { formatHex8 } from '../layout.js';
import { guardedClient } from '../lease/guarded-client.js';
import type { ReplicaLease } from '../lease/replica-lease.js';
import { nullLogger, type Logger } from '../logger.js';
import { comparePos, formatPos, type Pos } from '../pos.js';
import { markerPos, type RestoreMarker } from '../shipper/restore-marker.js';
import type { WalShipper } from '../shipper/wal-shipper.js';
import { WAL_HEADER_SIZE, frameAlign, parseWalHeader } from '../sqlite/wal-format.js';
import { checkAgeKeyShapes, hasAgeKeys, ObjectCodec, type AgeOptions } from './object-codec.js';
import { retentionCheckPeriod } from './retention.js';
import { retentionLoop, snapshotLoop, validationLoop, type ScheduleHost } from './replica-schedules.js';
import { runRetention, type RetentionResult } from './retention-run.js';
import { remoteEnd, uploadShadowSegment } from './segment-io.js';
import { validateReplica, type ValidationCounts, type ValidationResult } from './validate.js';

export type { RetentionResult } from './retention-run.js';
export type { ValidationCounts, ValidationResult } from './validate.js';
export type { ReplicaOptions } from './replica-options.js';
export type { ReplicaStats } from '../replication-status.js';
import type { ReplicaStats } from '../replication-status.js';
import type { ReplicaOptions } from './replica-options.js';

export const DEFAULT_RETENTION_MS = 24 * 3600_000;
export const DEFAULT_RETENTION_CHECK_INTERVAL_MS = 3600_000;

const MAX_BACKOFF_MS = 30_000;
/** Segment ends remembered for a replica that encrypts but cannot decrypt (see uploadedEnds). */
const MAX_REMEMBERED_ENDS = 64;

export class Replica extends EventEmitter {
  readonly name: string;
  readonly client: ReplicaClient;
  /** The lease this replica writes under (undefined: unleased). */
  readonly lease: ReplicaLease | undefined;
  private readonly syncIntervalMs: number;
  readonly snapshotIntervalMs: number;
  readonly retentionMs: number;
  readonly retentionCheckIntervalMs: number;
  readonly validationIntervalMs: number;
  /** Outcomes of validate() so far; a counter to export as a metric. */
  readonly validations: ValidationCounts = { ok: 0, mismatch: 0, error: 0 };
  private readonly now: () => number;
  private readonly log: Logger;
  private background: Promise<void>[] = [];
  private retentionRun: Promise<unknown> = Promise.resolve();
  private firstSync: { promise: Promise<void>; resolve: () => void };
  private position_: Pos | undefined;
  /**
   * The last position known to be in the store: unlike `position`, kept across a failed sync (which
   * makes the next one recompute it from the remote), so that lag can be measured while the store is
   * unreachable.
   */
  private confirmed: Pos | undefined;
  /** Counters for monitoring (see stats()): plain numbers, incremented on the way. */
  private readonly counters = { walBytes: 0, putBytes: 0, getBytes: 0, lastUploadAt: undefined as number | undefined };
  private running: Promise<void> | undefined;
  private readonly stop_ = new StopSignal();
  private wake: (() => void) | undefined;
  /** When the last sync finished, on the monotonic clock. */
  private lastSyncAt = -Infinity;
  private queue: Promise<unknown> = Promise.resolve();
  private lastError: unknown;
  private readonly age: AgeOptions | undefined;
  private codecPromise: Promise<ObjectCodec> | undefined;
  /**
   * Where each segment uploaded by this process ends, by its name: for a replica with age recipients but
   * no identities, which cannot decode its own last segment to find where it ends after a failed sync.
   * (After a restart the map is empty, and a new generation starts instead; see syncOnce.)
   */
  private readonly uploadedEnds = new Map<string, number>();

  constructor(
    private readonly shipper: WalShipper,
    opts: ReplicaOptions,
  ) {
    super();
    this.name = opts.name;
    this.lease = opts.lease;
    this.client = opts.lease ? guardedClient(opts.client, opts.lease) : opts.client;
    this.syncIntervalMs = opts.syncIntervalMs ?? 1000;
    this.snapshotIntervalMs = opts.snapshotIntervalMs ?? 0;
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.retentionCheckIntervalMs = opts.retentionCheckIntervalMs ?? DEFAULT_RETENTION_CHECK_INTERVAL_MS;
    this.validationIntervalMs = opts.validationIntervalMs ?? 0;
    // As in Litestream, a snapshot interval or retention ≤ 0 switches the feature off (config allows "-1s").
    for (const [k, v] of [['snapshotIntervalMs', this.snapshotIntervalMs], ['retentionMs', this.retentionMs], ['retentionCheckIntervalMs', this.retentionCheckIntervalMs], ['validationIntervalMs', this.validationIntervalMs]] as const) {
      if (Number.isNaN(v)) throw new ReplicateError('INVALID_ARGUMENT', `replica ${opts.name}: ${k} is not a number`);
    }
    if (this.retentionMs > 0 && this.retentionCheckIntervalMs <= 0) {
      // Litestream's ticker panics on this; a check that never runs would silently keep everything.
      throw new ReplicateError('INVALID_ARGUMENT', `replica ${opts.name}: retention-check-interval must be > 0 when retention is enabled`);
    }
    this.now = opts.now ?? Date.now;
    let resolveFirst!: () => void;
    this.firstSync = { promise: new Promise<void>((r) => (resolveFirst = r)), resolve: () => resolveFirst() };
    this.log = opts.logger ?? nullLogger;
    this.age = hasAgeKeys(opts.age) ? opts.age : undefined;
    checkAgeKeyShapes(this.age, opts.name);
    if (this.age && !this.age.recipients?.length) {
      // Litestream writes such a replica in the clear and then cannot read it back with the same config.
      throw new ReplicateError(
        'INVALID_ARGUMENT',
        `replica ${opts.name}: age identities without recipients: snapshots and WAL segments would be written unencrypted; ` +
          'add the public key of each identity under age: recipients: (`age-keygen -y KEYFILE` prints it)',
        { details: { replica: opts.name } },
      );
    }
    if (this.age && !this.age.identities?.length) {
      this.log.warn('replica encrypts with age but has no identities: restoring it, validating it and continuing its generation after a restart need the identity (a restart starts a new generation instead)', {
        replica: opts.name,
      });
    }
    shipper.on('position', () => this.wake?.());
    if (opts.lease) {
      opts.lease.setGenerationSource(() => this.position?.generation ?? shipper.pos()?.generation);
      opts.lease.on('lost', (err) => {
        // Nothing more is written (the guarded client refuses it); the loops stop without waiting.
        this.lastError = err;
        this.stop_.stop();
        this.wake?.();
        this.emit('leaseLost', err);
        if (this.listenerCount('error') > 0) this.emit('error', err);
      });
    }
    shipper.addRestoreCheck(this.name, (marker) => this.checkRestoredPosition(marker));
  }

  /**
   * Whether the shipper may continue a restored generation: only if this replica ends exactly where the
   * restore ended. Past it, someone else wrote to the generation since, and uploading our writes after
   * theirs would interleave two histories. Returns why not, or undefined.
   */
  private async checkRestoredPosition(marker: RestoreMarker): Promise<string | undefined> {
    const snapshots = await collect(this.client.snapshots(marker.generation));
    if (snapshots.length === 0) return `replica ${this.name} holds no snapshot of generation ${marker.generation}`;
    let end: Pos;
    try {
      end = await this.calcPos(marker.generation);
    } catch (err) {
      if (isReplicateError(err, 'AGE_IDENTITY')) return `replica ${this.name} cannot read where it ends: ${err.message}`;
      throw err;
    }
    const restored = markerPos(marker);
    if (comparePos(end, restored) !== 0) {
      return `replica ${this.name} moved on since the restore (it ends at ${formatPos(end)}, the restore at ${formatPos(restored)})`;
    }
    return undefined;
  }

  private get position(): Pos | undefined {
    return this.position_;
  }

  private set position(pos: Pos | undefined) {
    this.position_ = pos;
    if (pos !== undefined) this.confirmed = pos;
  }

  /**
   * How this replica's objects are encoded (LZ4, and age when configured). Made once; the age library is
   * loaded then, and only for a replica with keys. Replication awaits it before starting, so a key the
   * library rejects fails the start.
   */
  codec(): Promise<ObjectCodec> {
    return (this.codecPromise ??= ObjectCodec.create(this.age, this.name));
  }

  /** What this replica holds, as far as it knows (undefined until the first sync). */
  pos(): Pos | undefined {
    return this.position;
  }

  /** The last position known to be in the store (kept across failed syncs; undefined until known). */
  confirmedPos(): Pos | undefined {
    return this.confirmed;
  }

  /**
   * How far behind this replica is, in milliseconds: the age of the oldest change the shipper has copied
   * that this replica does not hold yet (0 when it holds everything). It keeps growing while the store is
   * unreachable, although nothing is uploaded. `nowMs` on the monotonic clock.
   */
  lagMs(nowMs = monotonicMs()): number {
    const db = this.shipper.pos();
    if (!db) return 0;
    const p = this.confirmed;
    if (p !== undefined && p.generation === db.generation && comparePos(p, db) >= 0) return 0;
    const since = this.shipper.timeline.firstAfter(p);
    return since === undefined ? 0 : Math.max(0, nowMs - since);
  }

  /** This replica's figures for monitoring (Litestream's per-replica metrics, lag, last upload, last error). */
  stats(nowMs = monotonicMs()): ReplicaStats {
    const counts = this.client.requestCounts();
    const c = this.counters;
    const error = this.lastError;
    return {
      name: this.name,
      type: this.client.type,
      location: this.client.location,
      position: this.confirmed,
      lagSeconds: this.lagMs(nowMs) / 1000,
      lastUploadAt: c.lastUploadAt,
      walBytes: c.walBytes,
      operations: {
        LIST: { count: counts.LIST, bytes: 0 },
        PUT: { count: counts.PUT, bytes: c.putBytes },
        GET: { count: counts.GET, bytes: c.getBytes },
        DELETE: { count: counts.DELETE, bytes: 0 },
      },
      validations: { ...this.validations },
      ...(error !== undefined ? { error: describeError(error) } : {}),
    };
  }

  /** The error of the last failed sync, cleared by a successful one. */
  get error(): unknown {
    return this.lastError;
  }

  start(): void {
    if (this.running) return;
    this.running = this.loop();
    const host = this.scheduleHost();
    if (this.snapshotIntervalMs > 0) this.background.push(snapshotLoop(host, this.snapshotIntervalMs));
    if (this.retentionMs > 0) this.background.push(retentionLoop(host, retentionCheckPeriod(this.retentionMs, this.retentionCheckIntervalMs)));
    if (this.validationIntervalMs > 0) this.background.push(validationLoop(host, this.validationIntervalMs));
  }

  private scheduleHost(): ScheduleHost {
    return {
      name: this.name,
      client: this.client,
      log: this.log,
      stop: this.stop_,
      now: this.now,
      firstSync: this.firstSync.promise,
      generation: () => this.position?.generation ?? this.shipper.pos()?.generation,
      snapshot: () => this.snapshot(),
      enforceRetention: () => this.enforceRetention(),
      validate: () => this.validate(),
      reportError: (what, err) => this.reportBackgroundError(what, err),
    };
  }

  /**
   * Restores this replica at the live database's current position into the meta directory and compares
   * the two page images (see database-digest.ts). A mismatch is a result (logged as an error, counted,
   * emitted as 'validation'), not an exception; failing to pin, reach or restore the position throws and
   * counts as `error`.
   */
  async validate(): Promise<ValidationResult> {
    try {
      const result = await validateReplica({
        replica: this.name,
        client: this.client,
        age: this.age,
        shipper: this.shipper,
        log: this.log,
        syncedPosition: async () => {
          await this.sync();
          return this.position;
        },
      });
      this.validations[result.status]++;
      this.emit('validation', result);
      return result;
    } catch (err) {
      this.validations.error++;
      throw err;
    }
  }

  private reportBackgroundError(what: string, err: unknown): void {
    this.log.error(what, { replica: this.name, error: describeError(err) });
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /**
   * Deletes what falls out of the retention window (see retention.ts for the rule), taking a snapshot
   * first when none is inside the window. Deletions go from what no kept restore needs upwards —
   * segments (later offsets before offset 0), then snapshots, then whole generations — so a run that
   * fails part-way leaves extra objects, never a hole in what is kept. Returns undefined while the
   * database has no generation yet (there would be no "current generation" to protect).
   */
  enforceRetention(): Promise<RetentionResult | undefined> {
    const run = this.retentionRun.then(() => this.enforceRetentionOnce());
    this.retentionRun = run.catch(() => undefined);
    return run;
  }

  private async enforceRetentionOnce(): Promise<RetentionResult | undefined> {
    if (this.retentionMs <= 0) return undefined;
    const current = this.shipper.pos()?.generation;
    if (current === undefined) return undefined;
    const result = await runRetention({
      client: this.client,
      replica: this.name,
      log: this.log,
      retentionMs: this.retentionMs,
      now: this.now(),
      currentGeneration: current,
      snapshot: () => this.snapshot(),
    });
    this.emit('retention', result);
    return result;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      await this.waitForWork();
      if (this.stopped) break;
      const wait = this.lastSyncAt + this.syncIntervalMs - monotonicMs();
      if (wait > 0) await this.sleep(wait);
      if (this.stopped) break;
      try {
        await this.shipper.catchUp();
        await this.sync();
        failures = 0;
      } catch {
        failures++;
        await this.sleep(Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(failures, 7)));
      }
    }
  }

  private behind(): boolean {
    const db = this.shipper.pos();
    // Another generation is always "behind", whatever the names' order (ours sort descending in time).
    return db !== undefined && (this.position === undefined || this.position.generation !== db.generation || comparePos(this.position, db) < 0);
  }

  private waitForWork(): Promise<void> {
    if (this.behind()) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
    });
  }

  /** Sleeps, unless stopped; position changes do not shorten the sync interval (see StopSignal). */
  private sleep(ms: number, unref = false): Promise<void> {
    return this.stop_.sleep(ms, unref);
  }

  private get stopped(): boolean {
    return this.stop_.isStopped;
  }

  /** Runs uploads and snapshots one at a time, so a snapshot never races the position recovery of a sync. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Uploads everything the shipper has that this replica lacks. Serialized; throws on failure. */
  sync(): Promise<void> {
    return this.serialized(() => this.syncOnce());
  }

  private async syncOnce(): Promise<void> {
    try {
      let db = this.shipper.pos();
      if (!db) return;
      if (!this.position || this.position.generation !== db.generation) {
        try {
          this.position = await this.startPosition(db.generation);
        } catch (err) {
          if (!isReplicateError(err, 'AGE_IDENTITY')) throw err;
          db = await this.unreadableEnd(db.generation, err);
          this.position = await this.startPosition(db.generation);
        }
        this.log.debug('replica position', { replica: this.name, position: formatPos(this.position) });
      }
      // Up to the shipper's position at the start, not its moving end: under writes faster than the
      // uploads, chasing the end would never return (and nor would sync() or validate()). uploadNext()
      // runs at least once, so its checks of the remote against local state always happen.
      while ((await this.uploadNext()) && comparePos(this.position, db) < 0);
      this.lastSyncAt = monotonicMs();
      if (this.lastError !== undefined) this.log.info('replica recovered', { replica: this.name, position: formatPos(this.position) });
      this.lastError = undefined;
      this.firstSync.resolve();
    } catch (err) {
      this.position = undefined; // recompute from the remote next time
      this.lastError = err;
      this.log.error('replica sync failed', { replica: this.name, error: describeError(err) });
      // An 'error' event with no listener would throw (EventEmitter's rule); errors are also thrown and logged.
      if (this.listenerCount('error') > 0) this.emit('error', err);
      throw err;
    }
  }

  /** Where uploads of `generation` start: after the remote's end, with a first snapshot if it has none. */
  private async startPosition(generation: string): Promise<Pos> {
    const snapshots = await collect(this.client.snapshots(generation));
    if (snapshots.length === 0) await this.takeSnapshot(true); // already in the serialized queue
    return this.calcPos(generation);
  }

  /**
   * The remote's last segment of the current generation is age-encrypted and this replica cannot open it
   * (no identities, or none that matches): where the remote ends cannot be known, and uploading from a
   * guess could leave a hole or overlap. A new generation (with a snapshot) is always safe; returns the
   * shipper's position in it. Litestream fails every sync instead (spec §11, P2).
   */
  private async unreadableEnd(generation: string, err: ReplicateError): Promise<Pos> {
    const reason = `replica ${this.name} cannot read its last wal segment of generation ${generation} to find where it ends (age: ${err.details.reason === 'missing' ? 'no identities' : 'no matching identity'})`;
    this.log.warn('replica cannot continue its generation: its last wal segment is age-encrypted and cannot be decrypted here; starting a new generation (configure age.identities to continue generations across restarts)', {
      replica: this.name,
      generation,
      object: typeof err.details.object === 'string' ? err.details.object : '',
    });
    this.shipper.requestNewGeneration(generation, reason);
    await this.shipper.sync();
    const db = this.shipper.pos();
    if (!db || db.generation === generation) throw new ReplicateError('IO', `replica ${this.name}: ${reason}; no new generation could be started`, { cause: err });
    return db;
  }

  /**
   * Writes a snapshot of the database at the shipper's current index — unless this replica already
   * holds one there: an object once written is never rewritten with a later time (a restore at a time
   * between the two would find no snapshot at or before it). Returns the existing one then, so that
   * retention keeps it.
   */
  async snapshot(): Promise<SnapshotInfo> {
    // One at a time with uploads: two uploads from one position would write one segment name twice.
    return this.serialized(() => this.takeSnapshot(true));
  }

  /** `uploadFirst`: bring the replica's segments up to the snapshot's point first (see below). */
  private async takeSnapshot(uploadFirst: boolean): Promise<SnapshotInfo> {
    return this.shipper.withSnapshotLock(async (pos, image) => {
      const snapshots = await collect(this.client.snapshots(pos.generation));
      const existing = snapshots.find((s) => s.index === pos.index);
      if (existing) {
        this.log.info('snapshot skipped: the replica already holds one at this index', {
          replica: this.name,
          generation: pos.generation,
          index: formatHex8(pos.index),
          created: existing.createdAt.toISOString(),
        });
        return existing;
      }
      // Segments first, up to `pos`: a point-in-time restore that picks this snapshot replays only the
      // segments uploaded by then, and replaying older frames over a newer page image would give a state
      // that never existed. (A generation's first snapshot has no segments to come before it.)
      if (uploadFirst && snapshots.length > 0) {
        if (this.position?.generation !== pos.generation) this.position = await this.calcPos(pos.generation);
        while (comparePos(this.position, pos) < 0 && (await this.uploadNext()));
      }
      const started = monotonicMs();
      // The database exactly at `pos`, read through the shipper's one descriptor (opening and closing
      // another would drop SQLite's locks).
      const source = image();
      try {
        const info = await this.client.writeSnapshot(pos.generation, pos.index, (await this.codec()).encode(source, { reuseOutput: this.client.consumesBodyInOrder === true }));
        this.counters.putBytes += info.size;
        this.counters.lastUploadAt = this.now();
        this.log.info('snapshot written', { replica: this.name, position: formatPos(pos), elapsed: `${Math.round(monotonicMs() - started)}ms`, sz: info.size });
        this.emit('snapshot', info);
        return info;
      } finally {
        await source.return(undefined);
      }
    });
  }

  /** Spec §6.3: resume after the last segment (decoded to learn its length), or at the snapshot's index. */
  private async calcPos(generation: string): Promise<Pos> {
    const codec = await this.codec();
    return remoteEnd(this.client, codec, this.name, generation, {
      onRead: (n) => (this.counters.getBytes += n),
      knownEnd: codec.encrypts && !codec.decrypts ? (s) => this.uploadedEnds.get(formatPos(s)) : undefined,
    });
  }

  /** Uploads the next segment, or moves to the next index; false when there is nothing to do. */
  private async uploadNext(): Promise<boolean> {
    const pos = this.position!;
    // Only what is durable locally: a power cut must never leave the replica ahead of the shadow WAL.
    const db = await this.shipper.durablePos();
    if (!db || db.generation !== pos.generation) return false;
    const path = this.shipper.meta.shadowWalPath(pos.generation, pos.index);
    let size: number;
    let pageSize: number;
    try {
      ({ size, pageSize } = await open(path, 'r').then(async (h) => {
        try {
          const header = Buffer.alloc(WAL_HEADER_SIZE);
          await h.read(header, 0, WAL_HEADER_SIZE, 0);
          // The shadow file's own page size (the shipper's is unknown while it reopens the database).
          return { size: (await h.stat()).size, pageSize: parseWalHeader(header, `shadow wal ${path}`).pageSize };
        } finally {
          await h.close();
        }
      }));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        // The restored index of a generation continued after a restore: this replica holds all of it (the
        // shipper checked that it ends exactly here), and the shipper's WAL goes on at the next index.
        const from = this.shipper.restoredFrom();
        if (from && comparePos(from, pos) === 0 && db.index > pos.index) {
          this.position = { generation: pos.generation, index: pos.index + 1, offset: 0 };
          return true;
        }
        if (db.index > pos.index) return this.resnapshot(pos);
        if (db.index < pos.index) return this.diverged(pos, `the remote reaches wal index ${formatHex8(pos.index)}, past the local shadow wal's last index ${formatHex8(db.index)}`);
        throw new ReplicateError('IO', `replica ${this.name}: shadow wal ${formatHex8(pos.index)} of generation ${pos.generation} is gone; resynchronising`);
      }
      throw err;
    }
    // The current index grows while we read: only its published (committed) length may be uploaded.
    let end = frameAlign(size, pageSize);
    if (db.index === pos.index) end = Math.min(end, db.offset);
    if (pos.offset < end) {
      await this.uploadSegment(path, pos, end, pageSize);
      this.position = { ...pos, offset: end };
      return true;
    }
    if (pos.offset > end) return this.diverged(pos, `the remote ends at ${formatPos(pos)}, past the local shadow wal's end ${end}`);
    if (db.index > pos.index) {
      this.position = { generation: pos.generation, index: pos.index + 1, offset: 0 };
      return true;
    }
    return false;
  }

  /**
   * The shadow WAL index this replica needs next is gone locally (removed by cleanup while the remote
   * was further on — its newest segments were lost since — or lost with the meta directory): the
   * remote's chain cannot be continued from local state. A new snapshot at the shipper's current index
   * starts a chain that can; nothing committed is lost, point-in-time restores inside the gap are.
   */
  private async resnapshot(pos: Pos): Promise<boolean> {
    this.log.warn('replica cannot continue its chain: the shadow wal it needs next is gone locally; taking a new snapshot at the current index', {
      replica: this.name,
      position: formatPos(pos),
      missing: `${pos.generation}/${formatHex8(pos.index)}`,
      current: formatPos(this.shipper.pos()),
    });
    const info = await this.takeSnapshot(false); // the chain is broken: nothing to upload first
    if (info.generation !== pos.generation || info.index <= pos.index) {
      throw new ReplicateError('IO', `replica ${this.name}: taking a snapshot past missing shadow wal ${formatHex8(pos.index)}: the snapshot is at ${info.generation}/${formatHex8(info.index)}`);
    }
    this.position = await this.calcPos(pos.generation);
    return true;
  }

  /**
   * The remote holds bytes of this generation that local state does not (another replicator writes to
   * the same replica, or a local tail was lost in a crash): the lineage diverged and cannot continue.
   * Asks the shipper for a new generation (started before this returns) and fails this sync with a
   * clear error; the next sync snapshots the new generation.
   */
  private async diverged(pos: Pos, detail: string): Promise<never> {
    const reason = `replica ${this.name} diverged from local state: ${detail}`;
    this.log.error('replica diverged from local state: another replicator writes to it, or a local tail was lost; starting a new generation', {
      replica: this.name,
      position: formatPos(pos),
      detail,
    });
    this.shipper.requestNewGeneration(pos.generation, reason);
    await this.shipper.sync();
    throw new ReplicateError('REPLICA_DIVERGED', `replica ${this.name}: uploading generation ${pos.generation}: ${detail}; a new generation was started`, {
      details: { position: formatPos(pos), newGeneration: this.shipper.pos()?.generation },
    });
  }

  private async uploadSegment(path: string, pos: Pos, end: number, pageSize: number): Promise<void> {
    const started = monotonicMs();
    const codec = await this.codec();
    if (codec.encrypts && !codec.decrypts) {
      // Before the upload: a write that reaches the store but fails on the way back still ends here.
      this.uploadedEnds.set(formatPos(pos), end);
      if (this.uploadedEnds.size > MAX_REMEMBERED_ENDS) this.uploadedEnds.delete(this.uploadedEnds.keys().next().value!);
    }
    const info = await uploadShadowSegment(this.client, codec, this.name, path, pos, end, pageSize);
    this.counters.walBytes += end - pos.offset;
    this.counters.putBytes += info.size;
    this.counters.lastUploadAt = this.now();
    // Field names as Litestream's log line (sz = uncompressed bytes), so the same tooling reads both.
    this.log.debug('wal segment written', { replica: this.name, position: formatPos(pos), elapsed: `${Math.round(monotonicMs() - started)}ms`, sz: end - pos.offset });
    this.emit('segment', info);
  }

  /** Stops the background loop (the caller runs a final sync). */
  async stop(): Promise<void> {
    this.stop_.stop();
    this.wake?.();
    await this.running;
    await Promise.all(this.background);
    await this.retentionRun;
  }
}
