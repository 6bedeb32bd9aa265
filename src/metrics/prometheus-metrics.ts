/**
 * The replication's figures as Prometheus metrics, under Litestream v0.3.13's names, types and labels
 * (so its dashboards and alerts work unchanged), plus two of ours: `stn_replica_lag_seconds` and
 * `stn_replica_last_upload_timestamp_seconds`. prom-client is only the exposition layer: nothing is
 * counted here; every value is read from `replication.status()` when the registry is scraped (one status
 * per replication per scrape, shared by all the metrics), so the replication's own path stays a few
 * number increments.
 *
 * As Litestream's, series appear when there is something to show: checkpoint series once a checkpoint of
 * that mode ran, operation series once a request of that kind was made, position series once known.
 * `litestream_replica_operation_*` is per backend type for the whole process (no `db`/`name` labels), and
 * the file backend is not counted (Litestream counts cloud requests only).
 */
import { createRequire } from 'node:module';
import type { Counter, Gauge, Registry } from 'prom-client';
import { REPLICA_OPERATIONS } from '../client/replica-client.js';
import type { Replication } from '../replication.js';
import type { ReplicationStatus } from '../replication-status.js';

/**
 * prom-client, loaded when metrics are first registered: importing the library must not cost its load
 * time (tens of milliseconds) to applications that never serve metrics.
 */
export function promClient(): typeof import('prom-client') {
  return createRequire(import.meta.url)('prom-client') as typeof import('prom-client');
}

/** The replications to expose: a fixed list, or a function (a CLI that starts them one by one). */
export type ReplicationSource = readonly Replication[] | (() => readonly Replication[]);

/** Every metric name registered here (Litestream's first, then ours). */
export const METRIC_NAMES = [
  'litestream_db_size',
  'litestream_wal_size',
  'litestream_total_wal_bytes',
  'litestream_shadow_wal_index',
  'litestream_shadow_wal_size',
  'litestream_sync_count',
  'litestream_sync_error_count',
  'litestream_sync_seconds',
  'litestream_checkpoint_count',
  'litestream_checkpoint_error_count',
  'litestream_checkpoint_seconds',
  'litestream_replica_wal_bytes',
  'litestream_replica_wal_index',
  'litestream_replica_wal_offset',
  'litestream_replica_validation_total',
  'litestream_replica_operation_total',
  'litestream_replica_operation_bytes',
  'stn_replica_lag_seconds',
  'stn_replica_last_upload_timestamp_seconds',
] as const;

/** The statuses of every replication, one fetch shared by all the metrics of one scrape. */
export class StatusReader {
  private pending: Promise<ReplicationStatus[]> | undefined;

  constructor(private readonly source: ReplicationSource) {}

  replications(): readonly Replication[] {
    return typeof this.source === 'function' ? this.source() : this.source;
  }

  /**
   * prom-client starts every metric's collect() in the same turn of the event loop, so they all get the
   * promise of the first; it is dropped once settled, and the next scrape reads afresh. A replication that
   * cannot answer (closed, its worker gone) is left out.
   */
  read(): Promise<ReplicationStatus[]> {
    if (this.pending) return this.pending;
    const p = Promise.all(this.replications().map((r) => r.status().catch(() => undefined))).then((all) =>
      all.filter((s): s is ReplicationStatus => s !== undefined),
    );
    this.pending = p;
    void p.finally(() => {
      if (this.pending === p) this.pending = undefined;
    });
    return p;
  }
}

type Labels = Record<string, string>;
type Fill = (set: (labels: Labels, value: number) => void, statuses: ReplicationStatus[]) => void;

/**
 * Registers the metrics in `registry` (its own, or an application's: the names must not be taken there).
 * Returns a function that removes them again.
 */
export function registerReplicationMetrics(registry: Registry, source: ReplicationSource | StatusReader): () => void {
  const { Counter, Gauge } = promClient();
  const reader = source instanceof StatusReader ? source : new StatusReader(source);
  const names: string[] = [];

  function define(kind: 'gauge' | 'counter', name: (typeof METRIC_NAMES)[number], help: string, labelNames: string[], fill: Fill): void {
    names.push(name);
    const collect = async function (this: Gauge | Counter) {
      const statuses = await reader.read();
      this.reset();
      fill((labels, value) => {
        if (!Number.isFinite(value)) return;
        if (this instanceof Gauge) this.set(labels, value);
        else this.inc(labels, value);
      }, statuses);
    };
    if (kind === 'gauge') new Gauge({ name, help, labelNames, registers: [registry], collect });
    else new Counter({ name, help, labelNames, registers: [registry], collect });
  }

  const perDb =
    (pick: (s: ReplicationStatus) => number | undefined): Fill =>
    (set, statuses) => {
      for (const s of statuses) {
        const v = pick(s);
        if (v !== undefined) set({ db: s.dbPath }, v);
      }
    };
  const perReplica =
    (pick: (r: ReplicationStatus['replicas'][number]) => number | undefined): Fill =>
    (set, statuses) => {
      for (const s of statuses) {
        for (const r of s.replicas) {
          const v = pick(r);
          if (v !== undefined) set({ db: s.dbPath, name: r.name }, v);
        }
      }
    };
  const perCheckpointMode =
    (pick: (c: { count: number; errorCount: number; seconds: number }) => number): Fill =>
    (set, statuses) => {
      for (const s of statuses) {
        for (const [mode, c] of Object.entries(s.shipper.checkpoints)) {
          if (c.count > 0 || c.errorCount > 0) set({ db: s.dbPath, mode }, pick(c));
        }
      }
    };
  const perOperation =
    (what: 'count' | 'bytes'): Fill =>
    (set, statuses) => {
      const sums = new Map<string, number>();
      for (const s of statuses) {
        for (const r of s.replicas) {
          if (r.type === 'file') continue;
          for (const op of REPLICA_OPERATIONS) {
            const o = r.operations[op];
            if (o.count === 0 || (what === 'bytes' && op !== 'PUT' && op !== 'GET')) continue;
            const key = `${r.type}\n${op}`;
            sums.set(key, (sums.get(key) ?? 0) + o[what]);
          }
        }
      }
      for (const [key, v] of sums) {
        const [replica_type, operation] = key.split('\n') as [string, string];
        set({ replica_type, operation }, v);
      }
    };

  define(
    'gauge',
    'litestream_db_size',
    'Size of the database file, in bytes.',
    ['db'],
    perDb((s) => s.shipper.dbSizeBytes),
  );
  define(
    'gauge',
    'litestream_wal_size',
    "Size of the database's -wal file, in bytes.",
    ['db'],
    perDb((s) => s.shipper.walSizeBytes),
  );
  define(
    'counter',
    'litestream_total_wal_bytes',
    'Bytes written to the local shadow WAL since start.',
    ['db'],
    perDb((s) => s.shipper.totalWalBytes),
  );
  define(
    'gauge',
    'litestream_shadow_wal_index',
    'Shadow WAL index being written.',
    ['db'],
    perDb((s) => s.shipper.shadowWalIndex),
  );
  define(
    'gauge',
    'litestream_shadow_wal_size',
    'Bytes of shadow WAL kept locally for the current generation.',
    ['db'],
    perDb((s) => s.shipper.shadowWalSizeBytes),
  );
  define(
    'counter',
    'litestream_sync_count',
    'Syncs of the database into the shadow WAL.',
    ['db'],
    perDb((s) => s.shipper.syncCount),
  );
  define(
    'counter',
    'litestream_sync_error_count',
    'Syncs of the database that failed.',
    ['db'],
    perDb((s) => s.shipper.syncErrorCount),
  );
  define(
    'counter',
    'litestream_sync_seconds',
    'Seconds spent syncing the database.',
    ['db'],
    perDb((s) => s.shipper.syncSeconds),
  );
  define(
    'counter',
    'litestream_checkpoint_count',
    'Checkpoints run, by mode.',
    ['db', 'mode'],
    perCheckpointMode((c) => c.count),
  );
  define(
    'counter',
    'litestream_checkpoint_error_count',
    'Checkpoints that failed, by mode.',
    ['db', 'mode'],
    perCheckpointMode((c) => c.errorCount),
  );
  define(
    'counter',
    'litestream_checkpoint_seconds',
    'Seconds spent checkpointing, by mode.',
    ['db', 'mode'],
    perCheckpointMode((c) => c.seconds),
  );
  define(
    'counter',
    'litestream_replica_wal_bytes',
    'WAL bytes (uncompressed) uploaded to the replica.',
    ['db', 'name'],
    perReplica((r) => r.walBytes),
  );
  define(
    'gauge',
    'litestream_replica_wal_index',
    'WAL index the replica has reached.',
    ['db', 'name'],
    perReplica((r) => r.position?.index),
  );
  define(
    'gauge',
    'litestream_replica_wal_offset',
    'Offset within that WAL index the replica has reached.',
    ['db', 'name'],
    perReplica((r) => r.position?.offset),
  );
  define(
    'counter',
    'litestream_replica_validation_total',
    'Validations of the replica against the database, by outcome.',
    ['db', 'name', 'status'],
    (set, statuses) => {
      for (const s of statuses) {
        for (const r of s.replicas) {
          set({ db: s.dbPath, name: r.name, status: 'ok' }, r.validations.ok);
          set({ db: s.dbPath, name: r.name, status: 'error' }, r.validations.mismatch + r.validations.error);
        }
      }
    },
  );
  define(
    'counter',
    'litestream_replica_operation_total',
    'Requests to replica stores, by backend type and kind (file replicas not counted).',
    ['replica_type', 'operation'],
    perOperation('count'),
  );
  define(
    'counter',
    'litestream_replica_operation_bytes',
    'Bytes sent to (PUT) or read from (GET) replica stores, by backend type.',
    ['replica_type', 'operation'],
    perOperation('bytes'),
  );
  define(
    'gauge',
    'stn_replica_lag_seconds',
    'Age of the oldest committed change not yet in the replica; 0 when it holds everything.',
    ['db', 'name'],
    perReplica((r) => r.lagSeconds),
  );
  define(
    'gauge',
    'stn_replica_last_upload_timestamp_seconds',
    'When the replica last received a snapshot or WAL segment (seconds since the epoch).',
    ['db', 'name'],
    perReplica((r) => (r.lastUploadAt === undefined ? undefined : r.lastUploadAt / 1000)),
  );

  return () => {
    for (const n of names) registry.removeSingleMetric(n);
  };
}
