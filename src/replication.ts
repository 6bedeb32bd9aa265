/**
 * Replication of one database, for the CLI and for Node programs that embed it: a WalShipper following
 * the database and one Replica per destination. It never installs signal handlers or exits the process.
 *
 *   const r = await startReplication({ dbPath, replicas: [{ client: new FileReplicaClient({ path }) }] });
 *   app.db.prepare('INSERT …').run();
 *   await r.sync();          // everything committed so far is in every replica
 *   await r.close();         // final sync, then stop
 *
 * Where it runs: better-sqlite3 is synchronous, so the shipper's SQLite work (copies, checkpoints and
 * their fsyncs, snapshot reads, validation) blocks the thread it runs on — embedded, the application's
 * event loop. So by default the replication runs in a worker thread (src/embedded/) and the object
 * returned here is a proxy of it (WorkerReplication). It runs in-process (InProcessReplication) when
 * asked (`inline: true`: the CLI, which has no application on its loop) or when an option cannot cross a
 * thread boundary: a client that is not exactly a built-in one, a `now` clock, a `checkpointStepHook`.
 */
import { EventEmitter } from 'node:events';
import type { ReplicaClient } from './client/replica-client.js';
import { describeError, ReplicateError } from './errors.js';
import { nullLogger, type Logger } from './logger.js';
import { comparePos, formatPos } from './pos.js';
import type { Pos } from './pos.js';
import { Replica, type RetentionResult, type ValidationCounts, type ValidationResult } from './replica/replica.js';
import type { SnapshotInfo } from './client/replica-client.js';
import type { CheckpointPolicy } from './shipper/checkpoint-policy.js';
import type { MetaDir } from './meta/meta-dir.js';
import type { ShadowWalUsage } from './shipper/shadow-limit.js';
import { WalShipper } from './shipper/wal-shipper.js';
import type { CheckpointStepHook } from './shipper/db-connection.js';
import type { ReplicationStatus } from './replication-status.js';
import { monotonicMs } from './internal/clock.js';
import { reportError } from './internal/report-error.js';
import type { ReplicaLease } from './lease/replica-lease.js';
import type { ReplicaOptions } from './replica/replica-options.js';

/**
 * One destination of a replicated database: a Replica's options (src/replica/replica-options.ts, the
 * schedule keys with their defaults) less what startReplication supplies itself (the clock, the logger).
 */
export interface ReplicaSpec extends Omit<ReplicaOptions, 'name' | 'now' | 'logger' | 'lease'> {
  /** Defaults to the client's type; must be unique per database. */
  name?: string;
  /**
   * The replica's lease (src/lease/replica-lease.ts, for a client with the lease primitives): taken
   * before the first write (startReplication waits for it if it is not held yet), checked before every
   * write, released by close(). When it is lost, the replica stops writing at once and 'leaseLost' and
   * 'error' are emitted. Replication with a lease runs on the calling thread.
   */
  lease?: ReplicaLease;
}

/**
 * What startReplication takes; a database of a `litestream.yml` becomes one through
 * replicationOptionsFromConfig (src/config/replication-options.ts). Defaults: src/config/defaults.ts.
 */
export interface ReplicationOptions {
  dbPath: string;
  /** Litestream's `meta-path` (default `<dir>/.<name>-litestream`). */
  metaPath?: string;
  /** Litestream's `monitor-interval`: the poll period behind file watching (default 1 s). */
  monitorIntervalMs?: number;
  /** Litestream's `checkpoint-interval` (default 1 min; 0: no time-based checkpoints). */
  checkpointIntervalMs?: number;
  /** Litestream's `min-checkpoint-page-count` (default 1000). */
  minCheckpointPageCount?: number;
  /** Litestream's `max-checkpoint-page-count` (default 10,000; 0: no forced RESTART checkpoints). */
  maxCheckpointPageCount?: number;
  /**
   * Ours (`max-shadow-wal-size`; Litestream has no such limit): most bytes of shadow WAL kept for replicas
   * that are behind (default 1 GiB; 0: no limit); see WalShipper.
   */
  maxShadowWalBytes?: number;
  /** Largest shadow WAL file (default 4 GiB, what v0.3 segment names address); see WalShipper. Lower only in tests. */
  maxShadowWalFileBytes?: number;
  /** Ours (`continue-after-restore`): continue a restored generation when provably safe (default false); see WalShipper. */
  continueAfterRestore?: boolean;
  replicas: ReplicaSpec[];
  /** The clock object ages are judged by (retention window, snapshot schedule); default Date.now. For tests. */
  now?: () => number;
  logger?: Logger;
  signal?: AbortSignal;
  /**
   * Wait in `startReplication` while the database does not exist yet or is locked (default true). With
   * false, `startReplication` returns at once and the database is opened in the background when it
   * appears (`replicate -exec` starts the application that creates it).
   */
  waitForDatabase?: boolean;
  /** Fault injection for tests only (see CheckpointStepHook in src/shipper/db-connection.ts). Runs in-process. */
  checkpointStepHook?: CheckpointStepHook;
  /**
   * Run on the calling thread instead of a worker thread (default false). For a process with no event
   * loop of its own to protect (the CLI), or to reach the shipper and replicas themselves.
   */
  inline?: boolean;
}

export interface ReplicationEvents {
  generation: [{ generation: string; reason: string }];
  snapshot: [{ replica: string; generation: string; index: number; size: number }];
  segment: [{ replica: string; generation: string; index: number; offset: number; size: number }];
  checkpoint: [{ mode: string; newIndex?: number }];
  retention: [{ replica: string } & RetentionResult];
  validation: [{ replica: string } & ValidationResult];
  error: [{ replica?: string; error: unknown }];
  /** A replica's lease was lost (not renewed in time, or taken over): it stopped writing for good. */
  leaseLost: [{ replica: string; error: ReplicateError }];
  /** After close(), whether or not its final sync succeeded. */
  close: [];
}

/**
 * What callers read from the shipper, in-process (the WalShipper itself) or in a worker (a proxy whose
 * values come with the worker's messages, and are the worker's own after any awaited call returns).
 */
export interface ShipperView {
  readonly dbPath: string;
  readonly walPath: string;
  /** The local meta directory (for reading: paths and listings; the shipper alone writes there). */
  readonly meta: MetaDir;
  readonly opened: boolean;
  readonly pageSize: number | undefined;
  pos(): Pos | undefined;
  durablePos(): Promise<Pos | undefined>;
  shadowWalUsage(): Readonly<ShadowWalUsage>;
  restoredFrom(): Pos | undefined;
  /** Runs one sync now (copy new frames, maybe checkpoint). */
  sync(): Promise<void>;
}

/** What callers read from one replica, in-process (the Replica itself) or in a worker (a proxy). */
export interface ReplicaView {
  readonly name: string;
  /** The client given to startReplication (in a worker, its requests are counted in `requestCounts()`). */
  readonly client: ReplicaClient;
  readonly snapshotIntervalMs: number;
  readonly retentionMs: number;
  readonly retentionCheckIntervalMs: number;
  readonly validationIntervalMs: number;
  readonly validations: Readonly<ValidationCounts>;
  /** The error of the last failed sync, cleared by a successful one. */
  readonly error: unknown;
  pos(): Pos | undefined;
  sync(): Promise<void>;
  snapshot(): Promise<SnapshotInfo>;
  enforceRetention(): Promise<RetentionResult | undefined>;
  validate(): Promise<ValidationResult>;
}

/** One replicated database: InProcessReplication, or WorkerReplication (src/embedded/) by default. */
export abstract class Replication extends EventEmitter<ReplicationEvents> {
  abstract readonly shipper: ShipperView;
  abstract readonly replicas: readonly ReplicaView[];
  /** Whether the replication runs in a worker thread (false: on the caller's thread). */
  abstract readonly inWorker: boolean;
  abstract readonly dbPath: string;
  /**
   * Waits until everything committed to the database so far is in every replica. Throws if a replica
   * cannot be brought up to date (the error names it).
   */
  abstract sync(): Promise<void>;
  /** Stops replicating after a final sync of every replica; throws (naming what was not uploaded) if that fails. */
  abstract close(): Promise<void>;
  /**
   * The replication's figures as they are now (counters, sizes, positions, each replica's lag, last
   * upload and last error): plain data, for metrics and health checks (see replication-status.ts).
   * From a worker thread it is one message there and back.
   */
  abstract status(): Promise<ReplicationStatus>;

  static start(opts: ReplicationOptions): Promise<Replication> {
    return startReplication(opts);
  }
}

/** Checks shared by both ways of running; returns the replicas' names. */
function replicaNames(opts: ReplicationOptions): string[] {
  if (opts.replicas.length === 0) throw new ReplicateError('CONFIG', `no replicas configured for ${opts.dbPath}`);
  const names = opts.replicas.map((r) => r.name ?? r.client.type);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new ReplicateError('CONFIG', `duplicate replica name "${dup}" for ${opts.dbPath}`);
  return names;
}

/** The replication on the caller's thread: the shipper and the replicas themselves. */
export class InProcessReplication extends Replication {
  readonly shipper: WalShipper;
  readonly replicas: readonly Replica[];
  readonly inWorker = false;
  private readonly log: Logger;
  private closed = false;

  private constructor(opts: ReplicationOptions) {
    super();
    this.log = opts.logger ?? nullLogger;
    const names = replicaNames(opts);
    const checkpoint: Partial<CheckpointPolicy> = {};
    if (opts.checkpointIntervalMs !== undefined) checkpoint.checkpointIntervalMs = opts.checkpointIntervalMs;
    if (opts.minCheckpointPageCount !== undefined) checkpoint.minCheckpointPageCount = opts.minCheckpointPageCount;
    if (opts.maxCheckpointPageCount !== undefined) checkpoint.maxCheckpointPageCount = opts.maxCheckpointPageCount;
    this.shipper = new WalShipper({
      dbPath: opts.dbPath,
      metaPath: opts.metaPath,
      monitorIntervalMs: opts.monitorIntervalMs,
      checkpoint,
      maxShadowWalBytes: opts.maxShadowWalBytes,
      maxShadowWalFileBytes: opts.maxShadowWalFileBytes,
      continueAfterRestore: opts.continueAfterRestore,
      logger: this.log,
      checkpointStepHook: opts.checkpointStepHook,
    });
    this.replicas = opts.replicas.map(
      (r, i) =>
        new Replica(this.shipper, {
          name: names[i]!,
          client: r.client,
          syncIntervalMs: r.syncIntervalMs,
          snapshotIntervalMs: r.snapshotIntervalMs,
          retentionMs: r.retentionMs,
          retentionCheckIntervalMs: r.retentionCheckIntervalMs,
          validationIntervalMs: r.validationIntervalMs,
          now: opts.now,
          logger: this.log,
          lease: r.lease,
          age: r.age,
        }),
    );
    // Shadow WAL files are kept until every replica is past them.
    this.shipper.setRetention(
      () => {
        const db = this.shipper.pos();
        let min: number | undefined;
        for (const r of this.replicas) {
          const p = r.pos();
          if (!db || !p || p.generation !== db.generation) return undefined;
          min = min === undefined ? p.index : Math.min(min, p.index);
        }
        return min;
      },
      () => this.behindReplicas(),
    );
    this.shipper.on('generation', (e) => this.emit('generation', e));
    this.shipper.on('checkpoint', (e) => this.emit('checkpoint', e));
    const forward = (e: { replica?: string; error: unknown }) => reportError(this, e);
    this.shipper.on('error', (error) => forward({ error }));
    for (const r of this.replicas) {
      r.on('snapshot', (s) => {
        this.trimTimeline();
        this.emit('snapshot', { replica: r.name, ...s });
      });
      r.on('segment', (s) => {
        this.trimTimeline();
        this.emit('segment', { replica: r.name, ...s });
      });
      r.on('retention', (e) => this.emit('retention', { replica: r.name, ...e }));
      r.on('validation', (e) => this.emit('validation', { replica: r.name, ...e }));
      r.on('error', (error) => forward({ replica: r.name, error }));
      r.on('leaseLost', (error) => this.emit('leaseLost', { replica: r.name, error }));
    }
  }

  /** The copy times every replica is past are not needed for lag any more. */
  private trimTimeline(): void {
    this.shipper.timeline.trimToSlowest(this.replicas.map((r) => r.confirmedPos()));
  }

  /** The figures as they are now (see Replication.status); synchronous here. */
  statusNow(): ReplicationStatus {
    const now = monotonicMs();
    return {
      dbPath: this.dbPath,
      position: this.shipper.pos(),
      shipper: this.shipper.stats(),
      replicas: this.replicas.map((r) => r.stats(now)),
    };
  }

  status(): Promise<ReplicationStatus> {
    return Promise.resolve(this.statusNow());
  }

  /** Replicas short of the shipper's current index, named with their location and last error. */
  private behindReplicas(): string[] {
    const db = this.shipper.pos();
    const behind = this.replicas.filter((r) => {
      const p = r.pos();
      return !db || !p || p.generation !== db.generation || p.index < db.index;
    });
    return behind.map((r) => `${r.name} (${r.client.location}${r.error !== undefined ? `: ${describeError(r.error)}` : ''})`);
  }

  /** Opens the database (waiting while it does not exist) and starts replicating in the background. */
  static override async start(opts: ReplicationOptions): Promise<InProcessReplication> {
    const r = new InProcessReplication(opts);
    // Each replica's codec, which loads the age library for a replica with keys and checks them with
    // it: a key it rejects fails the start, before any lease is taken.
    await Promise.all(r.replicas.map((x) => x.codec()));
    // Leases before anything is written (a snapshot comes with the first sync); one that is held
    // elsewhere is waited for here (the lease logs who holds it).
    const leases = r.replicas.flatMap((x) => (x.lease ? [x.lease] : []));
    try {
      for (const l of leases) if (l.state === 'idle') await l.acquire(opts.signal);
      await r.shipper.start(opts.signal, { waitForDatabase: opts.waitForDatabase });
    } catch (err) {
      await Promise.all(leases.map((l) => l.release()));
      throw err;
    }
    for (const replica of r.replicas) replica.start();
    return r;
  }

  get dbPath(): string {
    return this.shipper.dbPath;
  }

  async sync(): Promise<void> {
    await this.shipper.sync();
    const target = this.shipper.pos();
    if (!target) return;
    const failures: string[] = [];
    await Promise.all(
      this.replicas.map(async (r) => {
        try {
          await r.sync();
          const p = r.pos();
          // Generation names do not order lineages in time (ours sort descending): a replica that moved
          // on to a newer generation since holds the target in that generation's snapshot.
          const caughtUp =
            p !== undefined &&
            (p.generation === target.generation ? comparePos(p, target) >= 0 : p.generation === this.shipper.pos()?.generation);
          if (!caughtUp) throw new ReplicateError('IO', `at ${formatPos(p)}, wanted ${formatPos(target)}`);
        } catch (err) {
          failures.push(`${r.name} (${r.client.location}): ${describeError(err)}`);
        }
      }),
    );
    if (failures.length > 0) {
      throw new ReplicateError('IO', `sync of ${this.dbPath} incomplete; not uploaded to: ${failures.join('; ')}`, {
        details: { position: formatPos(target) },
      });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.replicas.map((r) => r.stop()));
    let failure: { err: unknown } | undefined; // boxed: whatever was thrown is rethrown below
    try {
      await this.shipper.openIfPresent();
      await this.sync();
    } catch (err) {
      failure = { err };
    }
    await this.shipper.close();
    // After the final sync: a waiting instance takes over from the last state this one uploaded.
    await Promise.all(this.replicas.map(async (r) => r.lease?.release()));
    this.emit('close');
    if (failure) throw failure.err;
  }
}

/**
 * Starts replicating `opts.dbPath` (see the file comment for where it runs). Resolves once the database
 * is open and followed (or at once with `waitForDatabase: false`).
 */
export async function startReplication(opts: ReplicationOptions): Promise<Replication> {
  const names = replicaNames(opts);
  // A lease object lives on this thread (its timers, its 'lost' event): so does its replication.
  const leased = opts.replicas.some((r) => r.lease !== undefined);
  if (opts.inline === true || leased || opts.now !== undefined || opts.checkpointStepHook !== undefined)
    return InProcessReplication.start(opts);
  // Loaded on use: the CLI (always in-process) never loads the worker side.
  const { WorkerReplication, transferableClients } = await import('./embedded/worker-replication.js');
  const clients = transferableClients(opts.replicas.map((r) => r.client));
  if (!clients) return InProcessReplication.start(opts);
  return WorkerReplication.launch(opts, names, clients);
}
