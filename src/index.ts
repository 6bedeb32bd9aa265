/**
 * stn-replicate's public library API. Everything a Node program needs to read and restore Litestream
 * v0.3 replicas; the CLI (src/cli) is a thin consumer of these exports.
 */
export { ReplicateError, NotFoundError, ERROR_CODES, isReplicateError, isNotFound, describeError } from './errors.js';
export type { ErrorCode, ReplicateErrorOptions } from './errors.js';
export type { Logger, LogFields } from './logger.js';
export { nullLogger } from './logger.js';
export type { Pos } from './pos.js';
export { formatPos, comparePos } from './pos.js';
export { ReplicaLayout, MAX_INDEX, isGenerationName, snapshotName, walSegmentName, parseSnapshotName, parseWalSegmentName } from './layout.js';

export type { ReplicaClient, SnapshotInfo, WalSegmentInfo, ObjectBody, OpOptions, OperationCounts, ReplicaOperation, StoredLease, LeaseCapableClient } from './client/replica-client.js';
export { collect, supportsLease } from './client/replica-client.js';
export { ReplicaLease, readLease, breakLease, DEFAULT_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from './lease/replica-lease.js';
export type { ReplicaLeaseOptions, LeaseState, ReplicaLeaseEvents } from './lease/replica-lease.js';
export { LEASE_FORMAT, describeHolder } from './lease/lease-record.js';
export type { LeaseHolder, LeaseRecord } from './lease/lease-record.js';
export { FileReplicaClient } from './client/file-client.js';
export type { FileReplicaClientOptions } from './client/file-client.js';
// The cloud SDKs are loaded only when a client of that kind first talks to its store.
export { S3ReplicaClient } from './client/s3-client.js';
export type { S3ReplicaClientOptions } from './client/s3-client.js';
export { GcsReplicaClient } from './client/gcs-client.js';
export type { GcsReplicaClientOptions } from './client/gcs-client.js';
export { AbsReplicaClient } from './client/abs-client.js';
export type { AbsReplicaClientOptions } from './client/abs-client.js';
export { SftpReplicaClient } from './client/sftp-client.js';
export type { SftpReplicaClientOptions } from './client/sftp-client.js';

export { encodeLz4Frame, decodeLz4Frame } from './internal/lz4-frame.js';
export { ObjectCodec, hasAgeKeys } from './replica/object-codec.js';
export type { AgeOptions, ObjectDecodeOptions } from './replica/object-codec.js';
export { parseWalHeader, WalScanner, walChecksum } from './sqlite/wal-format.js';
export type { WalHeader, WalScanResult } from './sqlite/wal-format.js';

export { listReplica, listGeneration, generationRows } from './replica/listing.js';
export type { NamedReplica, GenerationRow } from './replica/listing.js';
export { chooseGeneration, planRestore, generationBounds, restorableRange, restorableRanges, formatRestorableRanges, summarizePlan } from './replica/restore-plan.js';
export type { GenerationListing, RestorePlan, IndexPlan, PlanOptions, RestorableRange, RestoreTarget, RestorePlanSummary } from './replica/restore-plan.js';
export { restore, executeRestore, planReplicaRestore, previewRestore, INTEGRITY_CHECKS } from './replica/restore.js';
export { restoreIfMissing } from './replica/restore-if-missing.js';
export type { RestoreIfMissingOptions, RestoreIfMissingOutcome } from './replica/restore-if-missing.js';
export type { RestoreOptions, RestoreResult, RestoreProgress, IntegrityCheck, RestorePreview, PreviewRestoreOptions } from './replica/restore.js';

export * from './config/index.js';
export { VERSION, LITESTREAM_COMPAT_VERSION } from './version.js';

export { startReplication, Replication, InProcessReplication } from './replication.js';
export type { ReplicationStatus, ReplicaStats, ShipperStats, CheckpointCounts } from './replication-status.js';
export { startMetricsServer, parseBindAddress } from './metrics/metrics-server.js';
export type { MetricsServer, MetricsServerOptions, BindAddress } from './metrics/metrics-server.js';
export { registerReplicationMetrics, METRIC_NAMES } from './metrics/prometheus-metrics.js';
export type { ReplicationSource } from './metrics/prometheus-metrics.js';
export { evaluateHealth, DEFAULT_HEALTH_MAX_LAG_MS } from './metrics/health.js';
export type { HealthReport } from './metrics/health.js';
export type { ReplicationOptions, ReplicaSpec, ReplicationEvents, ShipperView, ReplicaView } from './replication.js';
export { WalShipper } from './shipper/wal-shipper.js';
export type { ShipperOptions, GenerationEvent, CheckpointEvent, RestoreCheck } from './shipper/wal-shipper.js';
export type { RestoreMarker } from './meta/restore-marker.js';
export { Replica } from './replica/replica.js';
export type { ReplicaOptions, RetentionResult } from './replica/replica.js';
export { planRetention, firstSnapshotDelay, retentionCheckPeriod } from './replica/retention.js';
export type { RetentionPlan, RetentionInput, GenerationObjects } from './replica/retention.js';
