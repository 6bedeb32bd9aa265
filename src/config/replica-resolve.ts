/**
 * What a replica's `url` implies, and the checks Litestream's per-type builders make
 * (`new<Type>ReplicaClientFromConfig`, `cmd/litestream/main.go`), shared by the config file and the
 * CLI's URL forms. Errors carry a bare detail ("cannot specify url & path for s3 replica"); callers
 * prefix the place.
 */
import { ReplicateError } from '../errors.js';
import { absolutePath, endpointWithScheme, parseReplicaUrl, parseS3Host } from './replica-url.js';
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
    if (u.query !== undefined && t !== 's3' && t !== 'file') {
      throw fail(
        `a ${t} replica URL takes no query options (got ${u.query.map(([k]) => JSON.stringify(k)).join(', ')}); use the replica's config keys`,
      );
    }
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
        if (u.query !== undefined) applyS3Query(r, input, u.query);
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

/** The query options an s3 replica URL takes, with their config-key twins. */
const S3_QUERY_KEYS = { endpoint: 'endpoint', region: 'region', forcePathStyle: 'force-path-style', skipVerify: 'skip-verify' } as const;
type S3QueryKey = keyof typeof S3_QUERY_KEYS;

/**
 * `s3://bucket/path?endpoint=host:port&region=…&forcePathStyle=true&skipVerify=true`, as later Litestream
 * versions read them (v0.3.13 ignores a query): they override what the host implies (ParseHost); an
 * endpoint turns path-style addressing on unless `forcePathStyle=false`; a scheme-less endpoint gets http
 * for local hosts, https otherwise. Stricter than Litestream, so that nothing is silently ignored: an
 * unknown or repeated key, an empty value, a boolean other than true/false, or an option also set by its
 * config key (`endpoint:` …) is an error.
 */
function applyS3Query(r: ReplicaConfig, configured: ReplicaConfig, query: readonly (readonly [string, string])[]): void {
  const unknown = query.map(([k]) => k).filter((k) => !Object.hasOwn(S3_QUERY_KEYS, k));
  if (unknown.length > 0) {
    throw fail(
      `unknown query option${unknown.length === 1 ? '' : 's'} ${unknown.map((k) => JSON.stringify(k)).join(', ')} in s3 replica URL ` +
        `(supported: ${Object.keys(S3_QUERY_KEYS).join(', ')})`,
      { options: unknown },
    );
  }
  const values = new Map<S3QueryKey, string>();
  for (const [k, v] of query as readonly (readonly [S3QueryKey, string])[]) {
    if (values.has(k)) throw fail(`query option "${k}" is given twice in s3 replica URL`);
    if (v === '') throw fail(`query option "${k}" in s3 replica URL has no value`);
    const configKey = S3_QUERY_KEYS[k];
    const field = ({ endpoint: 'endpoint', region: 'region', forcePathStyle: 'forcePathStyle', skipVerify: 'skipVerify' } as const)[k];
    if (configured[field] !== undefined) throw fail(`${configKey} is given twice: as "${k}" in the url and as ${configKey}:`);
    values.set(k, v);
  }
  const bool = (k: 'forcePathStyle' | 'skipVerify'): boolean | undefined => {
    const v = values.get(k);
    if (v === undefined) return undefined;
    if (v !== 'true' && v !== 'false') throw fail(`query option "${k}" in s3 replica URL must be true or false, got ${JSON.stringify(v)}`);
    return v === 'true';
  };
  const forcePathStyle = bool('forcePathStyle');
  const skipVerify = bool('skipVerify');
  const endpoint = values.get('endpoint');
  if (endpoint !== undefined) {
    r.endpoint = endpointWithScheme(endpoint);
    r.forcePathStyle = true;
  }
  const region = values.get('region');
  if (region !== undefined) r.region = region;
  if (forcePathStyle !== undefined) r.forcePathStyle = forcePathStyle;
  if (skipVerify !== undefined) r.skipVerify = skipVerify;
}
