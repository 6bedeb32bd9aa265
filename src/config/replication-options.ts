/**
 * A database of a loaded config as `startReplication` options: what `replicate -config` runs, and what
 * an application that embeds replication passes to reuse its `litestream.yml` (see docs/deploy.md).
 */
import type { ReplicationOptions } from '../replication.js';
import { buildReplicaClient } from './build-client.js';
import { replicaName } from './config.js';
import type { Env } from './env-expand.js';
import type { DbConfig } from './types.js';

/** Litestream's default `sync-interval`. */
export const DEFAULT_SYNC_INTERVAL_MS = 1000;

/**
 * The options that replicate `db` as configured. `env` supplies the credentials the config leaves to
 * the environment (LITESTREAM_ACCESS_KEY_ID…), `homeDir` the home directory for sftp's `~` paths and
 * default known_hosts; the library never reads `process.env` itself. Clients
 * are created here but connect only when first used.
 */
export function replicationOptionsFor(db: DbConfig, env: Env = {}, homeDir?: string): ReplicationOptions {
  return {
    dbPath: db.path,
    metaPath: db.metaPath,
    monitorIntervalMs: db.monitorIntervalMs,
    checkpointIntervalMs: db.checkpointIntervalMs,
    minCheckpointPageCount: db.minCheckpointPageCount,
    maxCheckpointPageCount: db.maxCheckpointPageCount,
    maxShadowWalBytes: db.maxShadowWalBytes,
    continueAfterRestore: db.continueAfterRestore,
    replicas: db.replicas.map((r) => ({
      name: replicaName(r),
      client: buildReplicaClient(r, env, homeDir),
      syncIntervalMs: r.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS,
      // Unset keys take Litestream's defaults in the library (no scheduled snapshots, 24 h retention checked hourly).
      snapshotIntervalMs: r.snapshotIntervalMs,
      retentionMs: r.retentionMs,
      retentionCheckIntervalMs: r.retentionCheckIntervalMs,
      validationIntervalMs: r.validationIntervalMs,
      age: r.age,
    })),
  };
}
