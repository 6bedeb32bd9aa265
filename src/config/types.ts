/**
 * The typed shape of a litestream.yml once parsed and validated. "Unset" is `undefined` (the defaults are
 * in defaults.ts); durations are milliseconds and say so. The keys that are runtime options too take
 * their type and meaning from `ReplicationOptions` and `ReplicaSpec` (one definition per option);
 * replicationOptionsFromConfig turns one into the other.
 */
import type { ReplicaSpec, ReplicationOptions } from '../replication.js';

export const REPLICA_TYPES = ['file', 's3', 'gcs', 'abs', 'sftp'] as const;
export type ReplicaType = (typeof REPLICA_TYPES)[number];

export function isReplicaType(t: string): t is ReplicaType {
  return (REPLICA_TYPES as readonly string[]).includes(t);
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_TYPES = ['text', 'json'] as const;
export type LogType = (typeof LOG_TYPES)[number];

export interface AgeConfig {
  /** age identities (secret keys), used to decrypt. Secrets: never log them. */
  identities: string[];
  /** age recipients (public keys), used to encrypt. */
  recipients: string[];
}

/** A replica's keys that are its `ReplicaSpec` schedule as they are. */
type ReplicaScheduleKeys = 'syncIntervalMs' | 'snapshotIntervalMs' | 'retentionMs' | 'retentionCheckIntervalMs' | 'validationIntervalMs';

export interface ReplicaConfig extends Pick<ReplicaSpec, ReplicaScheduleKeys> {
  /** Always set after parsing: the URL scheme, else `type:`, else "file". */
  type: ReplicaType;
  /** `name:`; the effective name is `replicaName(r)` (name, else type). */
  name?: string;
  /** The `url:` as written (may hold a password for sftp: do not log it). */
  url?: string;
  /**
   * file: the absolute replica directory (from `path:` or the URL); s3/gcs/abs: the key prefix
   * (from the URL: cleaned, no leading "/"; "." for the bucket root); sftp: the remote path.
   */
  path?: string;
  /** s3/gcs bucket, abs container (from the URL host when a URL is given). */
  bucket?: string;
  region?: string;
  endpoint?: string;
  /**
   * As configured, or true when the URL host is a recognised S3-compatible provider. When unset,
   * Litestream uses path style iff an endpoint is set.
   */
  forcePathStyle?: boolean;
  skipVerify?: boolean;
  /** s3: send request checksums only when S3 requires them (R2, B2, Hetzner reject the SDK's default). */
  checksums?: 'when-supported' | 'when-required';
  /** Falls back to the top-level `access-key-id`. */
  accessKeyId?: string;
  /** Falls back to the top-level `secret-access-key`. */
  secretAccessKey?: string;
  accountName?: string;
  accountKey?: string;
  host?: string;
  user?: string;
  password?: string;
  /** sftp: a private key file, as written (`~` is expanded when the client is built). */
  keyPath?: string;
  /** Ours (`host-key`), sftp: the server's public host key line(s) to trust. */
  hostKey?: string;
  /** Ours (`known-hosts-path`), sftp: a known_hosts file; unset: ~/.ssh/known_hosts (unless host-key). */
  knownHostsPath?: string;
  /** Ours (`insecure-ignore-host-key`), sftp: accept any host key, as Litestream v0.3.13 does; for tests. */
  insecureIgnoreHostKey?: boolean;
  /** Set only when `age:` lists at least one identity or recipient. */
  age?: AgeConfig;
  /** Ours (`lease`): false replicates without the replica's lease (see docs/lease.md); unset: leased. */
  lease?: boolean;
  /** Ours (`lease-ttl`): the lease's TTL (unset: DEFAULT_LEASE_TTL_MS, 30 s). */
  leaseTtlMs?: number;
}

/** A database's keys that are `ReplicationOptions` as they are. */
type DbOptionKeys =
  | 'monitorIntervalMs'
  | 'checkpointIntervalMs'
  | 'minCheckpointPageCount'
  | 'maxCheckpointPageCount'
  | 'maxShadowWalBytes'
  | 'continueAfterRestore';

export interface DbConfig extends Pick<ReplicationOptions, DbOptionKeys> {
  /** Absolute path of the database file (`~` expanded). */
  path: string;
  /** Absolute (`~` expanded); Litestream's default is `<dir>/.<name>-litestream`. */
  metaPath?: string;
  replicas: ReplicaConfig[];
}

export interface LoggingConfig {
  level: LogLevel;
  type: LogType;
  /** Log to stderr instead of stdout. */
  stderr: boolean;
}

export interface Config {
  /** The file this came from (absolute), or the `sourcePath` given to parseConfig. */
  path: string;
  dbs: DbConfig[];
  exec?: string;
  /** Metrics/pprof bind address, as written (the replicate command checks it has a port). */
  addr?: string;
  /** Ours (`health-max-lag`): the replica lag over which /healthz answers 503 (unset: the default, 60 s). */
  healthMaxLagMs?: number;
  accessKeyId?: string;
  secretAccessKey?: string;
  logging: LoggingConfig;
  /**
   * Things Litestream would ignore silently — unknown keys, an unknown log level, a `type:` that the
   * URL overrides — each naming the file and place. The CLI logs them as warnings.
   */
  warnings: string[];
}
