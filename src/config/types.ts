/**
 * The typed shape of a litestream.yml once parsed and validated. "Unset" is `undefined` (the defaults
 * Litestream applies live with the code that uses each value); durations are milliseconds and say so.
 */

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

export interface ReplicaConfig {
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
  syncIntervalMs?: number;
  snapshotIntervalMs?: number;
  retentionMs?: number;
  retentionCheckIntervalMs?: number;
  validationIntervalMs?: number;
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
  /** Ours (`lease-ttl`): the lease's TTL (unset: 30 s). */
  leaseTtlMs?: number;
}

export interface DbConfig {
  /** Absolute path of the database file (`~` expanded). */
  path: string;
  /** Absolute (`~` expanded); Litestream's default is `<dir>/.<name>-litestream`. */
  metaPath?: string;
  monitorIntervalMs?: number;
  checkpointIntervalMs?: number;
  /** > 0 when set. */
  minCheckpointPageCount?: number;
  maxCheckpointPageCount?: number;
  /** stn-replicate's `max-shadow-wal-size` (Litestream has no such limit). */
  maxShadowWalBytes?: number;
  /** stn-replicate's `continue-after-restore` (default false). */
  continueAfterRestore?: boolean;
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
