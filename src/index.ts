/**
 * stn-replicate's public library API: what a Node program needs to replicate a SQLite database to
 * Litestream v0.3 replicas, restore from them, list them, and read their config and leases (the README's
 * "Library" section lists the entry points). Everything else in src/ is internal: the shipper, the
 * replica's upload loop, the WAL and LZ4 formats, the object layout. The CLI (src/cli) imports modules
 * directly and is a consumer like any other.
 */

// Replication: one database to its replicas, with its status and events.
export { startReplication, Replication } from './replication.js';
export type { ReplicationOptions, ReplicaSpec, ReplicationEvents, ShipperView, ReplicaView } from './replication.js';
export type { ReplicationStatus, ReplicaStats, ShipperStats, CheckpointCounts } from './replication-status.js';
export type { RetentionResult, ValidationResult, ValidationCounts } from './replica/replica.js';
export type { AgeOptions } from './replica/object-codec.js';
export type { Pos } from './pos.js';
export { formatPos } from './pos.js';

// Restore.
export { restore, previewRestore } from './replica/restore.js';
export type {
  RestoreOptions,
  RestoreResult,
  RestoreProgress,
  IntegrityCheck,
  RestorePreview,
  PreviewRestoreOptions,
} from './replica/restore.js';
export { restoreIfMissing } from './replica/restore-if-missing.js';
export type { RestoreIfMissingOptions, RestoreIfMissingOutcome } from './replica/restore-if-missing.js';
export type { RestoreTarget, RestorableRange, RestorePlanSummary, GenerationListing } from './replica/restore-plan.js';

// Listing a replica's generations, snapshots and WAL.
export { listReplica, listGeneration, generationRows } from './replica/listing.js';
export type { ReplicaSource, NamedReplica, GenerationRow } from './replica/listing.js';

// Replica clients. The cloud SDKs are loaded only when a client of that kind first talks to its store.
export type {
  ReplicaClient,
  SnapshotInfo,
  WalSegmentInfo,
  ObjectBody,
  OpOptions,
  OperationCounts,
  ReplicaOperation,
  StoredLease,
  LeaseCapableClient,
} from './client/replica-client.js';
export { supportsLease } from './client/replica-client.js';
export { FileReplicaClient } from './client/file-client.js';
export type { FileReplicaClientOptions } from './client/file-client.js';
export { S3ReplicaClient } from './client/s3-client.js';
export type { S3ReplicaClientOptions } from './client/s3-client.js';
export { GcsReplicaClient } from './client/gcs-client.js';
export type { GcsReplicaClientOptions } from './client/gcs-client.js';
export { AbsReplicaClient } from './client/abs-client.js';
export type { AbsReplicaClientOptions } from './client/abs-client.js';
export { SftpReplicaClient } from './client/sftp-client.js';
export type { SftpReplicaClientOptions } from './client/sftp-client.js';

// Config: a litestream.yml loaded, and turned into replication options and clients.
export { loadConfig, parseConfig, configPath, findDb, replicaName } from './config/config.js';
export type { ParseOptions, LoadOptions } from './config/config.js';
export type { Config, DbConfig, ReplicaConfig, AgeConfig, LoggingConfig, LogLevel, LogType, ReplicaType } from './config/types.js';
export type { Env } from './config/env-expand.js';
export { replicationOptionsFromConfig, replicaSpecFromConfig } from './config/replication-options.js';
export { buildReplicaClient, replicaFromUrl } from './config/build-client.js';
export {
  DEFAULT_CONFIG_PATH,
  DEFAULT_SYNC_INTERVAL_MS,
  DEFAULT_MONITOR_INTERVAL_MS,
  DEFAULT_SNAPSHOT_INTERVAL_MS,
  DEFAULT_RETENTION_MS,
  DEFAULT_RETENTION_CHECK_INTERVAL_MS,
  DEFAULT_VALIDATION_INTERVAL_MS,
  DEFAULT_MAX_SHADOW_WAL_BYTES,
  DEFAULT_LEASE_TTL_MS,
  MIN_LEASE_TTL_MS,
  DEFAULT_HEALTH_MAX_LAG_MS,
  DEFAULT_RESTORE_PARALLELISM,
} from './config/defaults.js';

// Errors: every error the library throws is a ReplicateError with a stable code.
export { ReplicateError, NotFoundError, ERROR_CODES, isReplicateError, isNotFound, describeError } from './errors.js';
export type { ErrorCode, ReplicateErrorOptions } from './errors.js';

// The replica lease: taking one for embedded replication, reading and breaking it.
export { ReplicaLease, readLease, breakLease } from './lease/replica-lease.js';
export type { ReplicaLeaseOptions, LeaseState, ReplicaLeaseEvents } from './lease/replica-lease.js';
export { describeHolder } from './lease/lease-record.js';
export type { LeaseHolder, LeaseRecord } from './lease/lease-record.js';

// Metrics and health.
export { startMetricsServer, parseBindAddress } from './metrics/metrics-server.js';
export type { MetricsServer, MetricsServerOptions, BindAddress } from './metrics/metrics-server.js';
export { registerReplicationMetrics } from './metrics/prometheus-metrics.js';
export type { ReplicationSource } from './metrics/prometheus-metrics.js';
export { evaluateHealth } from './metrics/health.js';
export type { HealthReport } from './metrics/health.js';

export type { Logger, LogFields } from './logger.js';
export { nullLogger } from './logger.js';
export { VERSION, LITESTREAM_COMPAT_VERSION } from './version.js';
