/**
 * One replica destination: follows the shipper's position and uploads what is new — a snapshot at the
 * start of a generation, then WAL segments named by their exact start offset (Litestream's layout, so
 * Litestream can restore and resume them). The position lives in memory and is recomputed from the
 * remote after a restart or any error (the listing is the source of truth), which is also how a
 * generation started by Litestream is resumed.
 */
import { EventEmitter } from 'node:events';
import { createReadStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { collect, type ReplicaClient, type SnapshotInfo, type WalSegmentInfo } from '../client/replica-client.js';
import { describeError, errnoCode, ReplicateError } from '../errors.js';
import { decodeLz4Frame, encodeLz4Frame } from '../internal/lz4-frame.js';
import { formatHex8 } from '../layout.js';
import { nullLogger, type Logger } from '../logger.js';
import { comparePos, formatPos, type Pos } from '../pos.js';
import { markerPos, type RestoreMarker } from '../shipper/restore-marker.js';
import type { WalShipper } from '../shipper/wal-shipper.js';
import { digestDatabaseFile, type DatabaseDigest } from '../shipper/database-digest.js';
import { WAL_HEADER_SIZE, frameAlign, frameSize, parseWalHeader } from '../sqlite/wal-format.js';
import { listGeneration } from './listing.js';
import { executeRestore } from './restore.js';
import { planRestore } from './restore-plan.js';
import { firstSnapshotDelay, planRetention, retentionCheckPeriod, type GenerationObjects } from './retention.js';

export interface ReplicaOptions {
  name: string;
  client: ReplicaClient;
  /** Least time between two uploads under load (default 1 s); an upload after a quiet period starts at once. */
  syncIntervalMs?: number;
  /** Take a snapshot this often (Litestream's `snapshot-interval`); 0 or unset: only when a generation starts or retention needs one. */
  snapshotIntervalMs?: number;
  /** Keep snapshots created within this window (default 24 h, Litestream's); 0 disables retention. */
  retentionMs?: number;
  /** How often retention is enforced (default 1 h; never less often than `retentionMs`). */
  retentionCheckIntervalMs?: number;
  /** Restore the replica and compare it with the live database this often (Litestream's `validation-interval`); 0 or unset: never. */
  validationIntervalMs?: number;
  /**
   * The clock that object ages are judged by (ms since the epoch; default Date.now). Only ages use it —
   * timers still wait in real time — so tests can replay a long history without waiting for it.
   */
  now?: () => number;
  logger?: Logger;
}

/** What one retention run removed (and the snapshot it took first, if none was inside the window). */
export interface RetentionResult {
  snapshotTaken?: SnapshotInfo;
  /** Per surviving generation, the lowest snapshot index kept. */
  kept: { generation: string; minIndex: number }[];
  deletedSegments: Pos[];
  deletedSnapshots: { generation: string; index: number }[];
  deletedGenerations: string[];
}

/** One validation: the replica restored at `position` against the live database there. */
export interface ValidationResult {
  status: 'ok' | 'mismatch';
  position: Pos;
  /** Digest of the live database at `position`. */
  expected: DatabaseDigest;
  /** Digest of the replica restored to `position`. */
  actual: DatabaseDigest;
  elapsedMs: number;
}

/** Validations so far, by outcome (`error`: the replica could not be restored or reached). */
export interface ValidationCounts {
  ok: number;
  mismatch: number;
  error: number;
}

export const DEFAULT_RETENTION_MS = 24 * 3600_000;
export const DEFAULT_RETENTION_CHECK_INTERVAL_MS = 3600_000;
/** setTimeout's limit; longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const READ_CHUNK = 1024 * 1024;
const MAX_BACKOFF_MS = 30_000;

export class Replica extends EventEmitter {
  readonly name: string;
  readonly client: ReplicaClient;
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
  private position: Pos | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  private lastSyncAt = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private lastError: unknown;

  constructor(
    private readonly shipper: WalShipper,
    opts: ReplicaOptions,
  ) {
    super();
    this.name = opts.name;
    this.client = opts.client;
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
    shipper.on('position', () => this.wake?.());
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
    const end = await this.calcPos(marker.generation);
    const restored = markerPos(marker);
    if (comparePos(end, restored) !== 0) {
      return `replica ${this.name} moved on since the restore (it ends at ${formatPos(end)}, the restore at ${formatPos(restored)})`;
    }
    return undefined;
  }

  /** What this replica holds, as far as it knows (undefined until the first sync). */
  pos(): Pos | undefined {
    return this.position;
  }

  /** The error of the last failed sync, cleared by a successful one. */
  get error(): unknown {
    return this.lastError;
  }

  start(): void {
    if (this.running) return;
    this.running = this.loop();
    if (this.snapshotIntervalMs > 0) this.background.push(this.snapshotLoop());
    if (this.retentionMs > 0) this.background.push(this.retentionLoop());
    if (this.validationIntervalMs > 0) this.background.push(this.validationLoop());
  }

  /** Spec §6.6: validate on a fixed rhythm; the outcome is logged and counted in `validations`. */
  private async validationLoop(): Promise<void> {
    while (!this.stopped) {
      await this.sleep(this.validationIntervalMs, true);
      if (this.stopped) break;
      try {
        await this.validate();
      } catch (err) {
        this.reportBackgroundError('validation failed', err);
      }
    }
  }

  /**
   * Restores this replica at the live database's current position into the meta directory and compares
   * the two page images (see database-digest.ts). A mismatch is a result (logged as an error, counted,
   * emitted as 'validation'), not an exception; failing to pin, reach or restore the position throws and
   * counts as `error`.
   */
  async validate(): Promise<ValidationResult> {
    const started = Date.now();
    const dir = join(this.shipper.meta.path, 'validation', this.name.replace(/[^A-Za-z0-9_.-]/g, '_'));
    try {
      const { pos, digest: expected } = await this.shipper.digestAtPosition();
      // The pinned position is in the shadow WAL: a sync uploads at least up to it.
      await this.sync();
      const have = this.position;
      if (!have || have.generation !== pos.generation || comparePos(have, pos) < 0) {
        throw new ReplicateError('IO', `replica ${this.name}: at ${formatPos(have)} after a sync, wanted ${formatPos(pos)}`);
      }
      await rm(dir, { recursive: true, force: true });
      const named = { name: this.name, client: this.client };
      const plan = planRestore(await listGeneration(named, pos.generation), { index: pos.index, offset: pos.offset });
      const output = join(dir, 'restored.db');
      await executeRestore(named, plan, { outputPath: output, integrityCheck: 'none', parallelism: 4, restoreMarker: false });
      const actual = await digestDatabaseFile(output);
      const ok = actual.sha256 === expected.sha256 && actual.pageCount === expected.pageCount && actual.pageSize === expected.pageSize;
      const result: ValidationResult = { status: ok ? 'ok' : 'mismatch', position: pos, expected, actual, elapsedMs: Date.now() - started };
      this.validations[result.status]++;
      const fields = { replica: this.name, position: formatPos(pos), expected: expected.sha256.slice(0, 16), actual: actual.sha256.slice(0, 16), elapsed: `${result.elapsedMs}ms` };
      if (ok) this.log.info('validation ok', fields);
      else this.log.error('validation mismatch: the replica does not restore to the live database', { ...fields, expectedPages: expected.pageCount, actualPages: actual.pageCount });
      this.emit('validation', result);
      return result;
    } catch (err) {
      this.validations.error++;
      throw err instanceof ReplicateError ? err : new ReplicateError('IO', `replica ${this.name}: validation failed: ${describeError(err)}`, { cause: err });
    } finally {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Spec §6.4: snapshots on a fixed rhythm, the first one timed by the age of the latest snapshot. */
  private async snapshotLoop(): Promise<void> {
    // The generation (and so which snapshots count) is known only after the first sync.
    await Promise.race([this.firstSync.promise, this.stoppedPromise]);
    if (this.stopped) return;
    let delay = this.snapshotIntervalMs;
    try {
      const generation = this.position?.generation ?? this.shipper.pos()?.generation;
      if (generation !== undefined) {
        const snapshots = await collect(this.client.snapshots(generation));
        const latest = snapshots.length > 0 ? Math.max(...snapshots.map((s) => s.createdAt.getTime())) : undefined;
        delay = firstSnapshotDelay(this.snapshotIntervalMs, this.now(), latest);
        if (delay < this.snapshotIntervalMs) this.log.info('snapshot interval adjusted', { replica: this.name, previous: latest === undefined ? '' : new Date(latest).toISOString(), delay: `${delay}ms` });
      }
    } catch (err) {
      this.log.warn('cannot list snapshots to schedule the next one; waiting a full interval', { replica: this.name, error: describeError(err) });
    }
    while (!this.stopped) {
      await this.sleep(delay, true);
      if (this.stopped) break;
      delay = this.snapshotIntervalMs;
      try {
        await this.serialized(() => this.snapshot());
      } catch (err) {
        this.reportBackgroundError('scheduled snapshot failed', err);
      }
    }
  }

  /** Spec §6.5: enforce retention every min(check interval, retention); a failed run is retried next time. */
  private async retentionLoop(): Promise<void> {
    const period = retentionCheckPeriod(this.retentionMs, this.retentionCheckIntervalMs);
    while (!this.stopped) {
      await this.sleep(period, true);
      if (this.stopped) break;
      try {
        await this.enforceRetention();
      } catch (err) {
        this.reportBackgroundError('retention failed; retrying at the next check', err);
      }
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
    const now = this.now();
    let plan = planRetention({ now, retentionMs: this.retentionMs, currentGeneration: current, generations: await this.listAll() });
    let snapshotTaken: SnapshotInfo | undefined;
    if (plan.needsSnapshot) {
      this.log.info('no snapshot inside the retention window; taking one before deleting', { replica: this.name });
      snapshotTaken = await this.serialized(() => this.snapshot());
      plan = planRetention({
        now,
        retentionMs: this.retentionMs,
        currentGeneration: current,
        generations: await this.listAll(),
        forceRetain: { generation: snapshotTaken.generation, index: snapshotTaken.index },
      });
    }
    const result: RetentionResult = { snapshotTaken, kept: plan.kept, deletedSegments: [], deletedSnapshots: [], deletedGenerations: [] };
    try {
      // Two batches, so that even a backend deleting a batch in parallel never removes an index's
      // offset 0 while a later offset of it survives.
      const later = plan.deleteSegments.filter((p) => p.offset > 0);
      const initial = plan.deleteSegments.filter((p) => p.offset === 0);
      for (const batch of [later, initial]) {
        if (batch.length === 0) continue;
        await this.client.deleteWalSegments(batch);
        result.deletedSegments.push(...batch);
      }
      for (const s of plan.deleteSnapshots) {
        await this.client.deleteSnapshot(s.generation, s.index);
        result.deletedSnapshots.push(s);
      }
      for (const g of plan.deleteGenerations) {
        if (g === current) continue; // the plan never lists it; this guards the one thing that must not happen
        await this.client.deleteGeneration(g);
        result.deletedGenerations.push(g);
      }
    } catch (err) {
      throw new ReplicateError('IO', `replica ${this.name}: retention stopped part-way: ${describeError(err)}`, {
        cause: err,
        details: { deletedSegments: result.deletedSegments.length, deletedSnapshots: result.deletedSnapshots.length, deletedGenerations: result.deletedGenerations },
      });
    }
    for (const k of plan.kept) {
      const segs = result.deletedSegments.filter((p) => p.generation === k.generation).length;
      const snaps = result.deletedSnapshots.filter((s) => s.generation === k.generation).length;
      if (segs + snaps > 0) this.log.info('retention: deleted below index', { replica: this.name, generation: k.generation, index: formatHex8(k.minIndex), snapshots: snaps, segments: segs });
    }
    for (const g of result.deletedGenerations) this.log.info('retention: generation deleted', { replica: this.name, generation: g });
    this.emit('retention', result);
    return result;
  }

  private async listAll(): Promise<GenerationObjects[]> {
    const out: GenerationObjects[] = [];
    for (const generation of await this.client.generations()) {
      out.push({ generation, snapshots: await collect(this.client.snapshots(generation)), segments: await collect(this.client.walSegments(generation)) });
    }
    return out;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      await this.waitForWork();
      if (this.stopped) break;
      const wait = this.lastSyncAt + this.syncIntervalMs - Date.now();
      if (wait > 0) await this.sleep(wait);
      if (this.stopped) break;
      try {
        await this.sync();
        failures = 0;
      } catch (err) {
        failures++;
        await this.sleep(Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(failures, 7)));
      }
    }
  }

  private behind(): boolean {
    const db = this.shipper.pos();
    return db !== undefined && (this.position === undefined || comparePos(this.position, db) < 0);
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

  /**
   * Sleeps, unless stopped; position changes do not shorten the sync interval. Schedule timers (hours
   * long) are unref'd: like the shipper's, they must not keep an embedding process alive.
   */
  private async sleep(ms: number, unref = false): Promise<void> {
    const until = Date.now() + ms;
    for (let left = ms; left > 0 && !this.stopped; left = until - Date.now()) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.stopWakes.delete(done);
          resolve();
        };
        const t = setTimeout(done, Math.min(left, MAX_TIMER_MS));
        if (unref) t.unref();
        this.stopWakes.add(done);
      });
    }
  }

  private readonly stopWakes = new Set<() => void>();
  private stopSignal!: () => void;
  private readonly stoppedPromise = new Promise<void>((r) => (this.stopSignal = r));

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
      const db = this.shipper.pos();
      if (!db) return;
      if (!this.position || this.position.generation !== db.generation) {
        const snapshots = await collect(this.client.snapshots(db.generation));
        if (snapshots.length === 0) await this.snapshot();
        this.position = await this.calcPos(db.generation);
        this.log.debug('replica position', { replica: this.name, position: formatPos(this.position) });
      }
      // Up to the shipper's position at the start, not its moving end: under writes faster than the
      // uploads, chasing the end would never return (and nor would sync() or validate()). uploadNext()
      // runs at least once, so its checks of the remote against local state always happen.
      while ((await this.uploadNext()) && comparePos(this.position, db) < 0);
      this.lastSyncAt = Date.now();
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

  /** Writes a snapshot of the database at the shipper's current index. */
  async snapshot(): Promise<SnapshotInfo> {
    return this.shipper.withSnapshotLock(async (pos) => {
      const started = Date.now();
      const source = createReadStream(this.shipper.dbPath, { highWaterMark: READ_CHUNK });
      try {
        const info = await this.client.writeSnapshot(pos.generation, pos.index, encodeLz4Frame(source));
        this.log.info('snapshot written', { replica: this.name, position: formatPos(pos), elapsed: `${Date.now() - started}ms`, sz: info.size });
        this.emit('snapshot', info);
        return info;
      } finally {
        source.destroy();
      }
    });
  }

  /** Spec §6.3: resume after the last segment (decoded to learn its length), or at the snapshot's index. */
  private async calcPos(generation: string): Promise<Pos> {
    const snapshots = await collect(this.client.snapshots(generation));
    if (snapshots.length === 0) throw new ReplicateError('NO_BACKUPS', `replica ${this.name}: no snapshot available in generation ${generation}`);
    const snapshotIndex = Math.max(...snapshots.map((s) => s.index));
    const segments = await collect(this.client.walSegments(generation));
    let last: WalSegmentInfo | undefined;
    for (const s of segments) if (!last || s.index > last.index || (s.index === last.index && s.offset > last.offset)) last = s;
    if (!last || last.index < snapshotIndex) return { generation, index: snapshotIndex, offset: 0 };
    let length = 0;
    const reader = await this.client.walSegmentReader(last);
    for await (const chunk of decodeLz4Frame({ label: this.client.walSegmentLocation(last) })(reader)) length += chunk.length;
    return { generation, index: last.index, offset: last.offset + length };
  }

  /** Uploads the next segment, or moves to the next index; false when there is nothing to do. */
  private async uploadNext(): Promise<boolean> {
    const pos = this.position!;
    const db = this.shipper.pos();
    if (!db || db.generation !== pos.generation) return false;
    const path = this.shipper.meta.shadowWalPath(pos.generation, pos.index);
    let size: number;
    try {
      size = (await open(path, 'r').then(async (h) => {
        try {
          return (await h.stat()).size;
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
        throw new ReplicateError('IO', `replica ${this.name}: shadow wal ${formatHex8(pos.index)} of generation ${pos.generation} is gone; resynchronising`);
      }
      throw err;
    }
    const pageSize = this.shipper.pageSize ?? 4096;
    // The current index grows while we read: only its published (committed) length may be uploaded.
    let end = frameAlign(size, pageSize);
    if (db.index === pos.index) end = Math.min(end, db.offset);
    if (pos.offset < end) {
      await this.uploadSegment(path, pos, end, pageSize);
      this.position = { ...pos, offset: end };
      return true;
    }
    if (pos.offset > end) {
      throw new ReplicateError('IO', `replica ${this.name}: position ${formatPos(pos)} is past the shadow wal's end ${end}; resynchronising`);
    }
    if (db.index > pos.index) {
      this.position = { generation: pos.generation, index: pos.index + 1, offset: 0 };
      return true;
    }
    return false;
  }

  private async uploadSegment(path: string, pos: Pos, end: number, pageSize: number): Promise<void> {
    const started = Date.now();
    const handle = await open(path, 'r');
    try {
      const header = Buffer.allocUnsafe(WAL_HEADER_SIZE);
      await handle.read(header, 0, WAL_HEADER_SIZE, 0);
      const h = parseWalHeader(header, `shadow wal ${path}`);
      const fsize = frameSize(pageSize);
      const replica = this.name;
      async function* bytes(): AsyncGenerator<Buffer> {
        let at = pos.offset;
        while (at < end) {
          // Chunks end on frame boundaries (the first one of a file also holds the 32-byte header).
          const head = at === 0 ? WAL_HEADER_SIZE : 0;
          const want = Math.min(end - at, head + Math.max(1, Math.floor(READ_CHUNK / fsize)) * fsize);
          const buf = Buffer.allocUnsafe(want);
          const { bytesRead } = await handle.read(buf, 0, want, at);
          if (bytesRead !== want) throw new ReplicateError('IO', `replica ${replica}: short read of ${path} at ${at}`);
          // Every frame must carry this cycle's salts: a segment never mixes two WAL cycles.
          for (let f = head; f + fsize <= want; f += fsize) {
            if (buf.readUInt32BE(f + 8) !== h.salt1 || buf.readUInt32BE(f + 12) !== h.salt2) {
              throw new ReplicateError('INVALID_WAL', `replica ${replica}: salt mismatch in ${path} at offset ${at + f}`);
            }
          }
          yield buf;
          at += want;
        }
      }
      const info = await this.client.writeWalSegment(pos, encodeLz4Frame(bytes()));
      // Field names as Litestream's log line (sz = uncompressed bytes), so the same tooling reads both.
      this.log.debug('wal segment written', { replica: this.name, position: formatPos(pos), elapsed: `${Date.now() - started}ms`, sz: end - pos.offset });
      this.emit('segment', info);
    } finally {
      await handle.close();
    }
  }

  /** Stops the background loop (the caller runs a final sync). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    for (const w of [...this.stopWakes]) w();
    this.stopSignal();
    await this.running;
    await Promise.all(this.background);
    await this.retentionRun;
  }
}
