/**
 * What a replica's `url` implies, and the checks Litestream's per-type builders make
 * (`new<Type>ReplicaClientFromConfig`, `cmd/litestream/main.go`), shared by the config file and the
 * CLI's URL forms. Errors carry a bare detail ("cannot specify url & path for s3 replica"); callers
 * prefix the place.
 */
import { ReplicateError } from '../errors.js';
import { absolutePath, parseReplicaUrl, parseS3Host } from './replica-url.js';
import type { ReplicaConfig, ReplicaType } from './types.js';

function fail(detail: string, details: Record<string, unknown> = {}): ReplicateError {
  return new ReplicateError('CONFIG', detail, { details });
}

const BUCKET_TYPES: readonly ReplicaType[] = ['s3', 'gcs', 'abs'];

/**
 * Returns a copy of `input` with its location resolved:
 * - file: `path` absolute (from `path:` or the URL); required;
 * - s3: bucket/region/endpoint/path-style from the URL host as Litestream's ParseHost reads it (region
 *   and endpoint only where not configured), key prefix from the URL path; bucket required;
 * - gcs/abs: bucket (container) = URL host, prefix from the URL path, abs account from `user@`;
 * - sftp: host, user, password from the URL where not configured, path as is; host and user required.
 * `url` together with `path` (any type), `bucket` (s3/gcs/abs) or `host` (sftp) is an error.
 */
export function resolveReplicaLocation(input: ReplicaConfig, cwd: string, homeDir: string): ReplicaConfig {
  const r: ReplicaConfig = { ...input };
  const t = r.type;
  if (r.url !== undefined) {
    if (r.path !== undefined) throw fail(`cannot specify url & path for ${t} replica`);
    if (BUCKET_TYPES.includes(t) && r.bucket !== undefined) throw fail(`cannot specify url & bucket for ${t} replica`);
    if (t === 'sftp' && r.host !== undefined) throw fail(`cannot specify url & host for ${t} replica`);
    const u = parseReplicaUrl(r.url, cwd, homeDir);
    switch (t) {
      case 'file':
        r.path = u.path || undefined;
        break;
      case 's3': {
        const h = parseS3Host(u.host);
        r.path = u.path;
        r.bucket = h.bucket;
        r.region ??= h.region;
        r.endpoint ??= h.endpoint;
        // Litestream: a URL-derived path style turns it on even over `force-path-style: false`.
        if (h.forcePathStyle) r.forcePathStyle = true;
        break;
      }
      case 'gcs':
        r.path = u.path;
        r.bucket = u.host || undefined;
        break;
      case 'abs':
        r.path = u.path;
        r.bucket = u.host || undefined;
        r.accountName ??= u.user || undefined;
        break;
      case 'sftp':
        r.host = u.host || undefined;
        r.user ??= u.user || undefined;
        r.password ??= u.password || undefined;
        r.path = u.path || undefined;
        break;
    }
  } else if (t === 'file' && r.path !== undefined) {
    r.path = absolutePath(r.path, cwd, homeDir);
  }

  if (t === 'file' && r.path === undefined) throw fail('file replica path required');
  if (BUCKET_TYPES.includes(t) && r.bucket === undefined) throw fail(`bucket required for ${t} replica`);
  if (t === 'sftp' && r.host === undefined) throw fail('host required for sftp replica');
  if (t === 'sftp' && r.user === undefined) throw fail('user required for sftp replica');
  return withoutUndefined(r);
}

/** Drops keys whose value is undefined, so that `toEqual` and `in` see only what is set. */
export function withoutUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}
