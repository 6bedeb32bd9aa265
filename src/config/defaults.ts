/**
 * Every default an unset option takes, in one module: what a `litestream.yml` key, a `startReplication`
 * option or a CLI flag means when it is not given. The config loader leaves unset keys undefined and the
 * library applies these, so a value read here is the one that runs, whichever way replication starts.
 * It imports only the layout's name limit, so every module can import it without a cycle.
 */
import { MAX_NAMED_VALUE } from '../layout.js';

/** The config file read when neither `-config` nor $LITESTREAM_CONFIG names one (Litestream's). */
export const DEFAULT_CONFIG_PATH = '/etc/litestream.yml';

/** `sync-interval`: the least time between two uploads of a replica under load (Litestream's 1 s). */
export const DEFAULT_SYNC_INTERVAL_MS = 1000;

/** `monitor-interval`: the poll period behind file watching (Litestream's 1 s). */
export const DEFAULT_MONITOR_INTERVAL_MS = 1000;

/** `snapshot-interval`: 0, no scheduled snapshots (only when a generation starts or retention needs one). */
export const DEFAULT_SNAPSHOT_INTERVAL_MS = 0;

/** `validation-interval`: 0, never. */
export const DEFAULT_VALIDATION_INTERVAL_MS = 0;

/** `retention`: snapshots and WAL kept for 24 h (Litestream's). */
export const DEFAULT_RETENTION_MS = 24 * 3600_000;

/** `retention-check-interval`: how often retention runs (Litestream's 1 h). */
export const DEFAULT_RETENTION_CHECK_INTERVAL_MS = 3600_000;

/**
 * `maxShadowWalFileBytes`: 4 GiB, the largest offset a v0.3 segment name (8 hex digits) can address
 * plus one.
 */
export const DEFAULT_MAX_SHADOW_WAL_FILE_BYTES = MAX_NAMED_VALUE + 1;

/**
 * The checkpoint policy (`CheckpointPolicy` in src/shipper/checkpoint-policy.ts): Litestream v0.3.13's
 * thresholds, in pages of the WAL's current cycle.
 */
export const DEFAULT_CHECKPOINT_POLICY = {
  /** `min-checkpoint-page-count`: a PASSIVE checkpoint once the cycle holds this many pages. */
  minCheckpointPageCount: 1000,
  /** `max-checkpoint-page-count`: a RESTART checkpoint (waiting for readers) at this many. */
  maxCheckpointPageCount: 10_000,
  /** The runaway fail-safe, a TRUNCATE checkpoint (not configurable in Litestream). */
  truncatePageCount: 500_000,
  /** `checkpoint-interval`: a PASSIVE checkpoint after this long without one (if the cycle holds more than a frame). */
  checkpointIntervalMs: 60_000,
};

/** `max-shadow-wal-size`: 1 GiB of local shadow WAL kept for replicas that are behind (0: no limit). */
export const DEFAULT_MAX_SHADOW_WAL_BYTES = 1024 ** 3;

/** `restore -parallelism`, and `RestoreOptions.parallelism`: WAL segments downloaded at once. */
export const DEFAULT_RESTORE_PARALLELISM = 8;

/** `lease-ttl` (ours): how long a replica's lease lasts without a renewal. */
export const DEFAULT_LEASE_TTL_MS = 30_000;

/** The shortest `lease-ttl` accepted: renewals every TTL/3 must have time to reach the store. */
export const MIN_LEASE_TTL_MS = 500;

/** `health-max-lag` (ours): the most a replica may lag behind its database while the health check passes. */
export const DEFAULT_HEALTH_MAX_LAG_MS = 60_000;
