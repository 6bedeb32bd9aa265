/**
 * Every default an unset option takes, in one module: what a `litestream.yml` key, a `startReplication`
 * option or a CLI flag means when it is not given. The config loader leaves unset keys undefined and the
 * library applies these, so a value read here is the one that runs, whichever way replication starts.
 *
 * Some are still defined beside the code that applies them and only re-exported here; their owners
 * import them from here once the definitions move in (moving them in, not importing both ways, keeps
 * this module free of import cycles).
 */
import { MAX_NAMED_VALUE } from '../layout.js';

export { DEFAULT_CHECKPOINT_POLICY } from '../shipper/checkpoint-policy.js';
export { DEFAULT_MAX_SHADOW_WAL_BYTES } from '../shipper/shadow-limit.js';

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

/** `restore -parallelism`, and `RestoreOptions.parallelism`: WAL segments downloaded at once. */
export const DEFAULT_RESTORE_PARALLELISM = 8;

/** `lease-ttl` (ours): how long a replica's lease lasts without a renewal. */
export const DEFAULT_LEASE_TTL_MS = 30_000;

/** The shortest `lease-ttl` accepted: renewals every TTL/3 must have time to reach the store. */
export const MIN_LEASE_TTL_MS = 500;

/** `health-max-lag` (ours): the most a replica may lag behind its database while the health check passes. */
export const DEFAULT_HEALTH_MAX_LAG_MS = 60_000;
