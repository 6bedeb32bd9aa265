/** Turns a replica's config into a ReplicaClient. Backends are constructed only when used. */
import { ReplicateError } from '../errors.js';
import { FileReplicaClient } from '../client/file-client.js';
import type { ReplicaClient } from '../client/replica-client.js';
import { REPLICA_TYPES, type ReplicaConfig } from './config.js';
import { parseReplicaUrl } from './replica-url.js';

export function buildReplicaClient(r: ReplicaConfig, _env: Record<string, string | undefined> = {}): ReplicaClient {
  switch (r.type) {
    case 'file':
      if (r.path === undefined) throw new ReplicateError('CONFIG', 'file replica path required');
      return new FileReplicaClient({ path: r.path });
    default:
      throw new ReplicateError('UNKNOWN_REPLICA_TYPE', `replica type "${r.type}" is not supported yet by stn-replicate (file replicas only in this version)`, {
        details: { type: r.type },
      });
  }
}

/** A replica named by a URL on the command line: default settings, no config. */
export function replicaFromUrl(url: string, cwd: string, homeDir: string): ReplicaConfig {
  const u = parseReplicaUrl(url, cwd, homeDir);
  if (!(REPLICA_TYPES as readonly string[]).includes(u.type)) {
    throw new ReplicateError('UNKNOWN_REPLICA_TYPE', `unknown replica type in URL: "${u.type}" (want file, s3, gcs or abs)`, { details: { type: u.type } });
  }
  const type = u.type as ReplicaConfig['type'];
  if (type === 'file') return { type, url, path: u.path };
  return { type, url, path: u.path, bucket: u.host, ...(u.user !== undefined ? { accountName: u.user } : {}) };
}
