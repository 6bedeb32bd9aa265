/**
 * One replica destination of one database. Its parts: the upload loop that follows the shipper's
 * position and uploads what is new (replica-uploader.ts), started by the monitor loop (replica-monitor.ts);
 * the snapshot, retention and validation schedules (replica-schedules.ts); retention runs
 * (retention-run.ts); validation (validate.ts); the check before a restored generation continues
 * (restore-continuation-check.ts). This class wires them, holds the lease it writes under, emits the
 * events (ReplicaEvents) and reports the figures for monitoring.
 */
import { EventEmitter } from 'node:events';
import type { ReplicaClient, SnapshotInfo } from '../client/replica-client.js';
import {
  DEFAULT_RETENTION_CHECK_INTERVAL_MS,
  DEFAULT_RETENTION_MS,
  DEFAULT_SNAPSHOT_INTERVAL_MS,
  DEFAULT_SYNC_INTERVAL_MS,
  DEFAULT_VALIDATION_INTERVAL_MS,
} from '../config/defaults.js';
import { describeError, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import { reportError } from '../internal/report-error.js';
import { SerialQueue } from '../internal/serial-queue.js';
import { StopSignal } from '../internal/stop-signal.js';
import { guardedClient } from '../lease/guarded-client.js';
import type { ReplicaLease } from '../lease/replica-lease.js';
import { nullLogger, type Logger } from '../logger.js';
import { comparePos, type Pos } from '../pos.js';
import type { WalShipper } from '../shipper/wal-shipper.js';
import { checkAgeKeyShapes, hasAgeKeys, ObjectCodec, type AgeOptions } from './object-codec.js';
import { retentionCheckPeriod } from './retention.js';
import { retentionLoop, snapshotLoop, validationLoop, type ScheduleHost } from './replica-schedules.js';
import { ReplicaMonitor } from './replica-monitor.js';
import { ReplicaUploader } from './replica-uploader.js';
import { checkRestoredPosition } from './restore-continuation-check.js';
import { runRetention, type RetentionResult } from './retention-run.js';
import { validateReplica, type ValidationCounts, type ValidationResult } from './validate.js';

export type { RetentionResult } from './retention-run.js';
export type { ValidationCounts, ValidationResult } from './validate.js';
export type { ReplicaEvents, ReplicaOptions, ReplicaRuntimeOptions } from './replica-options.js';
export type { ReplicaStats } from '../replication-status.js';
import type { ReplicaStats } from '../replication-status.js';
import type { ReplicaEvents, ReplicaRuntimeOptions } from './replica-options.js';

export class Replica extends EventEmitter<ReplicaEvents> {
  readonly name: string;
  readonly client: ReplicaClient;
  /** The lease this replica writes under (undefined: unleased). */
  readonly lease: ReplicaLease | undefined;
  readonly snapshotIntervalMs: number;
  readonly retentionMs: number;
  readonly retentionCheckIntervalMs: number;
  readonly validationIntervalMs: number;
  /** Outcomes of validate() so far; a counter to export as a metric. */
  readonly validations: ValidationCounts = { ok: 0, mismatch: 0, error: 0 };
  private readonly now: () => number;
  private readonly log: Logger;
  private background: Promise<void>[] = [];
  /** Retention runs one at a time, in the order asked (whatever the outcome of the one before). */
  private readonly retentionRuns = new SerialQueue();
  private readonly uploader: ReplicaUploader;
  private readonly monitor: ReplicaMonitor;
  private running: Promise<void> | undefined;
  private readonly stop_ = new StopSignal();
  private readonly age: AgeOptions | undefined;
  private codecPromise: Promise<ObjectCodec> | undefined;

  constructor(
    private readonly shipper: WalShipper,
    opts: ReplicaRuntimeOptions,
  ) {
    super();
    this.name = opts.name;
    this.lease = opts.lease;
    this.client = opts.lease ? guardedClient(opts.client, opts.lease) : opts.client;
    const syncIntervalMs = opts.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS;
    this.snapshotIntervalMs = opts.snapshotIntervalMs ?? DEFAULT_SNAPSHOT_INTERVAL_MS;
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.retentionCheckIntervalMs = opts.retentionCheckIntervalMs ?? DEFAULT_RETENTION_CHECK_INTERVAL_MS;
    this.validationIntervalMs = opts.validationIntervalMs ?? DEFAULT_VALIDATION_INTERVAL_MS;
    // As in Litestream, a snapshot interval or retention ≤ 0 switches the feature off (config allows "-1s").
    for (const [k, v] of [
      ['snapshotIntervalMs', this.snapshotIntervalMs],
      ['retentionMs', this.retentionMs],
      ['retentionCheckIntervalMs', this.retentionCheckIntervalMs],
      ['validationIntervalMs', this.validationIntervalMs],
    ] as const) {
      if (Number.isNaN(v)) throw new ReplicateError('INVALID_ARGUMENT', `replica ${opts.name}: ${k} is not a number`);
    }
    if (this.retentionMs > 0 && this.retentionCheckIntervalMs <= 0) {
      // Litestream's ticker panics on this; a check that never runs would silently keep everything.
      throw new ReplicateError('INVALID_ARGUMENT', `replica ${opts.name}: retention-check-interval must be > 0 when retention is enabled`);
    }
    this.now = opts.now ?? Date.now;
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
      this.log.warn(
        'replica encrypts with age but has no identities: restoring it, validating it and continuing its generation after a restart need the identity (a restart starts a new generation instead)',
        {
          replica: opts.name,
        },
      );
    }
    this.uploader = new ReplicaUploader(shipper, {
      name: this.name,
      client: this.client,
      log: this.log,
      now: this.now,
      codec: () => this.codec(),
      events: this,
    });
    this.monitor = new ReplicaMonitor(shipper, this.uploader, syncIntervalMs, this.stop_);
    if (opts.lease) {
      opts.lease.setGenerationSource(() => this.uploader.pos()?.generation ?? shipper.pos()?.generation);
      opts.lease.on('lost', (err) => {
        // Nothing more is written (the guarded client refuses it); the loops stop without waiting.
        this.uploader.lastError = err;
        this.stop_.stop();
        this.monitor.wakeUp();
        this.emit('leaseLost', err);
        reportError(this, err);
      });
    }
    shipper.addRestoreCheck(this.name, (marker) => checkRestoredPosition(this.name, this.client, (g) => this.uploader.calcPos(g), marker));
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
    return this.uploader.pos();
  }

  /** The last position known to be in the store (kept across failed syncs; undefined until known). */
  confirmedPos(): Pos | undefined {
    return this.uploader.confirmedPos();
  }

  /**
   * How far behind this replica is, in milliseconds: the age of the oldest change the shipper has copied
   * that this replica does not hold yet (0 when it holds everything). It keeps growing while the store is
   * unreachable, although nothing is uploaded. `nowMs` on the monotonic clock.
   */
  lagMs(nowMs = monotonicMs()): number {
    const db = this.shipper.pos();
    if (!db) return 0;
    const p = this.uploader.confirmedPos();
    if (p !== undefined && p.generation === db.generation && comparePos(p, db) >= 0) return 0;
    const since = this.shipper.timeline.firstAfter(p);
    return since === undefined ? 0 : Math.max(0, nowMs - since);
  }

  /** This replica's figures for monitoring (Litestream's per-replica metrics, lag, last upload, last error). */
  stats(nowMs = monotonicMs()): ReplicaStats {
    const counts = this.client.requestCounts();
    const c = this.uploader.counters;
    const error = this.uploader.lastError;
    return {
      name: this.name,
      type: this.client.type,
      location: this.client.location,
      position: this.uploader.confirmedPos(),
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
    return this.uploader.lastError;
  }

  start(): void {
    if (this.running) return;
    this.running = this.monitor.run();
    const host = this.scheduleHost();
    if (this.snapshotIntervalMs > 0) this.background.push(snapshotLoop(host, this.snapshotIntervalMs));
    if (this.retentionMs > 0)
      this.background.push(retentionLoop(host, retentionCheckPeriod(this.retentionMs, this.retentionCheckIntervalMs)));
    if (this.validationIntervalMs > 0) this.background.push(validationLoop(host, this.validationIntervalMs));
  }

  private scheduleHost(): ScheduleHost {
    return {
      name: this.name,
      client: this.client,
      log: this.log,
      stop: this.stop_,
      now: this.now,
      firstSync: this.uploader.synced,
      generation: () => this.uploader.pos()?.generation ?? this.shipper.pos()?.generation,
      snapshot: () => this.snapshot(),
      enforceRetention: () => this.enforceRetention(),
      validate: () => this.validate(),
      reportError: (what, err) => this.reportBackgroundError(what, err),
    };
  }

  /** Uploads everything the shipper has that this replica lacks. One at a time with snapshots; throws on failure. */
  sync(): Promise<void> {
    return this.uploader.sync();
  }

  /**
   * Writes a snapshot of the database at the shipper's current index — unless this replica already
   * holds one there: an object once written is never rewritten with a later time (a restore at a time
   * between the two would find no snapshot at or before it). Returns the existing one then, so that
   * retention keeps it.
   */
  snapshot(): Promise<SnapshotInfo> {
    return this.uploader.snapshot();
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
          return this.uploader.pos();
        },
        snapshotTakenAt: (generation, index) => this.uploader.snapshotTakenAt(generation, index),
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
    reportError(this, err);
  }

  /**
   * Deletes what falls out of the retention window (see retention.ts for the rule), taking a snapshot
   * first when none is inside the window. Deletions go from what no kept restore needs upwards —
   * segments (later offsets before offset 0), then snapshots, then whole generations — so a run that
   * fails part-way leaves extra objects, never a hole in what is kept. Returns undefined while the
   * database has no generation yet (there would be no "current generation" to protect).
   */
  enforceRetention(): Promise<RetentionResult | undefined> {
    return this.retentionRuns.run(() => this.enforceRetentionOnce());
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

  /** Stops the background loops (the caller runs a final sync). */
  async stop(): Promise<void> {
    this.stop_.stop();
    this.monitor.wakeUp();
    await this.running;
    await Promise.all(this.background);
    await this.retentionRuns.idle();
  }
}
