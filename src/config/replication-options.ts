/**
 * Config into runtime options, in one place (as Litestream's NewDBFromConfig and NewReplicaFromConfig):
 * a database of a loaded config becomes `startReplication` options, one of its replicas a `ReplicaSpec`.
 * `replicate -config`, `replicate DB_PATH REPLICA_URL…` and an application that embeds replication with
 * its `litestream.yml` (see docs/deploy.md) all go through here. Unset keys stay unset: the library
 * applies the defaults (src/config/defaults.ts).
 */
import type { ReplicaSpec, ReplicationOptions } from '../replication.js';
import { buildReplicaClient } from './build-client.js';
import { replicaName } from './config.js';
import type { Env } from './env-expand.js';
import type { DbConfig, ReplicaConfig } from './types.js';

/**
 * The options that replicate `db` as configured. `env` supplies the credentials the config leaves to the
 * environment (LITESTREAM_ACCESS_KEY_ID…), `homeDir` the home directory for sftp's `~` paths and default
 * known_hosts; the library never reads `process.env` itself. Clients are created here but connect only
 * when first used. Leases (`lease`, `lease-ttl`) are not attached: the `replicate` command creates them (see
 * docs/lease.md).
 */
export function replicationOptionsFromConfig(db: DbConfig, env: Env = {}, homeDir?: string): ReplicationOptions {
  return {
    dbPath: db.path,
    metaPath: db.metaPath,
    monitorIntervalMs: db.monitorIntervalMs,
    checkpointIntervalMs: db.checkpointIntervalMs,
    minCheckpointPageCount: db.minCheckpointPageCount,
    maxCheckpointPageCount: db.maxCheckpointPageCount,
    maxShadowWalBytes: db.maxShadowWalBytes,
    continueAfterRestore: db.continueAfterRestore,
    replicas: db.replicas.map((r) => replicaSpecFromConfig(r, env, homeDir)),
  };
}

/** One replica as configured (or named by a URL on the command line): its name, client and schedule. */
export function replicaSpecFromConfig(r: ReplicaConfig, env: Env = {}, homeDir?: string): ReplicaSpec {
  return {
    name: replicaName(r),
    client: buildReplicaClient(r, env, homeDir),
    syncIntervalMs: r.syncIntervalMs,
    snapshotIntervalMs: r.snapshotIntervalMs,
    retentionMs: r.retentionMs,
    retentionCheckIntervalMs: r.retentionCheckIntervalMs,
    validationIntervalMs: r.validationIntervalMs,
    age: r.age,
  };
}
