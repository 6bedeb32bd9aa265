/**
 * What `replication.status()` returns: the figures of one replicated database as plain data (numbers,
 * strings, positions), the same in-process and from a worker thread. It is the single source the
 * Prometheus exposition (src/metrics/) and the health check read; an embedding application can expose it
 * any other way.
 */
import type { ReplicaOperation } from './client/replica-client.js';
import type { Pos } from './pos.js';
import type { ValidationCounts } from './replica/validate.js';
import type { ShipperStats } from './shipper/shipper-stats.js';

export type { ShipperStats, CheckpointCounts } from './shipper/shipper-stats.js';

export interface ReplicationStatus {
  /** The database's path (Litestream's `db` label). */
  dbPath: string;
  /** The shipper's position (generation, shadow WAL index, committed size); undefined until opened. */
  position: Pos | undefined;
  shipper: ShipperStats;
  replicas: ReplicaStats[];
}

export interface ReplicaStats {
  /** The replica's name (Litestream's `name` label). */
  name: string;
  /** The backend type: file, s3, gcs, abs (Litestream's `replica_type` label). */
  type: string;
  /** Where the replica lives, without secrets. */
  location: string;
  /** The last position known to be in the store (kept while the store is unreachable). */
  position: Pos | undefined;
  /**
   * Age in seconds of the oldest change copied from the database that this replica does not hold yet; 0
   * when it holds everything. Grows while the store is unreachable.
   */
  lagSeconds: number;
  /** When the last snapshot or WAL segment was uploaded (ms since the epoch), undefined before the first. */
  lastUploadAt: number | undefined;
  /** Uncompressed WAL bytes uploaded (litestream_replica_wal_bytes). */
  walBytes: number;
  /**
   * Requests to the store by kind, and stored (compressed) bytes: PUT counts every snapshot and segment
   * uploaded, GET what the position recovery downloaded (validation downloads are not counted).
   */
  operations: Record<ReplicaOperation, { count: number; bytes: number }>;
  /** Outcomes of validations (Litestream's validation_total counts `mismatch` and `error` as "error"). */
  validations: ValidationCounts;
  /** The error of the last failed sync, cleared by a successful one. */
  error?: string;
}
