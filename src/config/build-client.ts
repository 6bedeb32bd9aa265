/**
 * Turns a resolved replica into a ReplicaClient, and a command-line replica URL into a replica.
 */
import { ReplicateError } from '../errors.js';
import { FileReplicaClient } from '../client/file-client.js';
import { S3ReplicaClient } from '../client/s3-client.js';
import { AbsReplicaClient } from '../client/abs-client.js';
import { GcsReplicaClient } from '../client/gcs-client.js';
import { SftpReplicaClient } from '../client/sftp-client.js';
import type { ReplicaClient } from '../client/replica-client.js';
import type { Env } from './env-expand.js';
import { resolveReplicaLocation } from './replica-resolve.js';
import { expandHome, parseReplicaUrl, redactUrl } from './replica-url.js';
import { isReplicaType, type ReplicaConfig } from './types.js';

/**
 * A replica whose type is known and whose location is resolved: for `file`, `path` is the absolute
 * replica directory. parseConfig and replicaFromUrl return exactly this (a ReplicaConfig).
 */
export type ResolvedReplica = Pick<ReplicaConfig, 'type'> & Partial<ReplicaConfig>;

/**
 * Builds the client for one replica. `env` is for backends that read credentials from the environment
 * (LITESTREAM_AZURE_ACCOUNT_KEY, AWS_*) or their emulator (STORAGE_EMULATOR_HOST); file needs none.
 * `homeDir` is for sftp: `~` in its key and known_hosts paths, and the default ~/.ssh/known_hosts.
 */
export function buildReplicaClient(r: ResolvedReplica, env: Env = {}, homeDir?: string): ReplicaClient {
  switch (r.type) {
    case 'file':
      if (r.path === undefined || r.path === '') throw new ReplicateError('CONFIG', 'file replica path required');
      return new FileReplicaClient({ path: r.path });
    case 's3':
      if (r.bucket === undefined || r.bucket === '') throw new ReplicateError('CONFIG', 'bucket required for s3 replica');
      // Litestream's own variables first; without them the SDK's default chain (AWS_*, profiles, roles).
      return new S3ReplicaClient({
        bucket: r.bucket,
        path: r.path,
        region: r.region,
        endpoint: r.endpoint,
        forcePathStyle: r.forcePathStyle,
        skipVerify: r.skipVerify,
        checksums: r.checksums === 'when-required' ? 'when_required' : 'when_supported',
        accessKeyId: r.accessKeyId ?? env.LITESTREAM_ACCESS_KEY_ID,
        secretAccessKey: r.secretAccessKey ?? env.LITESTREAM_SECRET_ACCESS_KEY,
      });
    case 'abs': {
      if (r.bucket === undefined || r.bucket === '') throw new ReplicateError('CONFIG', 'bucket required for abs replica');
      if (r.accountName === undefined)
        throw new ReplicateError('CONFIG', 'account name required for abs replica (account-name, or abs://ACCOUNT@container/path)');
      const accountKey = r.accountKey ?? env.LITESTREAM_AZURE_ACCOUNT_KEY;
      if (accountKey === undefined || accountKey === '') {
        throw new ReplicateError('CONFIG', 'account key required for abs replica (account-key, or LITESTREAM_AZURE_ACCOUNT_KEY)');
      }
      return new AbsReplicaClient({ accountName: r.accountName, accountKey, bucket: r.bucket, path: r.path, endpoint: r.endpoint });
    }
    case 'gcs': {
      if (r.bucket === undefined || r.bucket === '') throw new ReplicateError('CONFIG', 'bucket required for gcs replica');
      // Credentials are Application Default Credentials (the SDK finds them). STORAGE_EMULATOR_HOST is
      // honoured as Litestream's Go client does: "host:port" or a URL.
      const emulator = env.STORAGE_EMULATOR_HOST;
      const endpoint = emulator ? (/^https?:\/\//.test(emulator) ? emulator : `http://${emulator}`) : undefined;
      return new GcsReplicaClient({ bucket: r.bucket, path: r.path, ...(endpoint ? { endpoint } : {}) });
    }
    case 'sftp':
      return buildSftpClient(r, homeDir);
    default:
      throw new ReplicateError('UNKNOWN_REPLICA_TYPE', `unknown replica type: ${JSON.stringify(r.type)}`, { details: { type: r.type } });
  }
}

/**
 * The sftp client: Litestream's keys, plus the host key check Litestream v0.3.13 lacks: `host-key`, else
 * `known-hosts-path`, else ~/.ssh/known_hosts; `insecure-ignore-host-key: true` turns it off.
 */
function buildSftpClient(r: ResolvedReplica, homeDir: string | undefined): SftpReplicaClient {
  if (r.host === undefined || r.host === '') throw new ReplicateError('CONFIG', 'host required for sftp replica');
  if (r.user === undefined || r.user === '') throw new ReplicateError('CONFIG', 'user required for sftp replica');
  const home = (p: string, key: string) => {
    if ((p === '~' || p.startsWith('~/')) && !homeDir)
      throw new ReplicateError('CONFIG', `sftp replica ${key} ${p}: no home directory to expand ~ with`);
    return expandHome(p, homeDir ?? '');
  };
  const set = [
    r.hostKey !== undefined && 'host-key',
    r.knownHostsPath !== undefined && 'known-hosts-path',
    r.insecureIgnoreHostKey === true && 'insecure-ignore-host-key',
  ].filter(Boolean);
  if (set.length > 1) throw new ReplicateError('CONFIG', `sftp replica: ${set.join(' and ')} are given together; give one`);
  let knownHostsPath: string | undefined;
  if (r.knownHostsPath !== undefined) knownHostsPath = home(r.knownHostsPath, 'known-hosts-path');
  else if (r.hostKey === undefined && r.insecureIgnoreHostKey !== true) {
    if (!homeDir)
      throw new ReplicateError(
        'CONFIG',
        'sftp replica: no home directory for the default ~/.ssh/known_hosts; set known-hosts-path or host-key',
      );
    knownHostsPath = home('~/.ssh/known_hosts', 'known-hosts-path');
  }
  return new SftpReplicaClient({
    host: r.host,
    user: r.user,
    ...(r.password !== undefined ? { password: r.password } : {}),
    ...(r.keyPath !== undefined ? { keyPath: home(r.keyPath, 'key-path') } : {}),
    ...(r.path !== undefined ? { path: r.path } : {}),
    ...(r.hostKey !== undefined ? { hostKey: r.hostKey } : {}),
    ...(knownHostsPath !== undefined ? { knownHostsPath } : {}),
    ...(r.insecureIgnoreHostKey === true ? { insecureIgnoreHostKey: true } : {}),
  });
}

/**
 * A replica named by a URL on the command line (`restore s3://bucket/db`): type from the scheme,
 * location from the URL exactly as for `url:` in the config; every other setting unset.
 * Unknown scheme → UNKNOWN_REPLICA_TYPE; a URL that cannot name a replica → INVALID_ARGUMENT.
 */
export function replicaFromUrl(url: string, cwd: string, homeDir: string): ReplicaConfig {
  const { type } = parseReplicaUrl(url, cwd, homeDir);
  if (!isReplicaType(type)) {
    throw new ReplicateError('UNKNOWN_REPLICA_TYPE', `unknown replica type in URL: "${type}" (want file, s3, gcs, abs or sftp)`, {
      details: { type },
    });
  }
  try {
    return resolveReplicaLocation({ type, url }, cwd, homeDir);
  } catch (err) {
    if (!(err instanceof ReplicateError)) throw err;
    throw new ReplicateError('INVALID_ARGUMENT', `replica URL ${redactUrl(url)}: ${err.message}`, { cause: err, details: err.details });
  }
}
