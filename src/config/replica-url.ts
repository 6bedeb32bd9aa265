/**
 * Replica URLs (`file:///path`, `s3://bucket/path`, `gcs://bucket/path`, `abs://account@container/path`,
 * `sftp://user:password@host:port/path`) split the way Litestream v0.3.13 splits them (docs/config.md, Replicas): Go's
 * `net/url` parse, then `ParseReplicaURL` (`cmd/litestream/main.go`). Also the path helpers every config
 * path goes through: `~` expansion, making absolute, Go's `path.Clean`.
 */
import { posix } from 'node:path';
import { describeError, ReplicateError } from '../errors.js';

/** A string "is a URL" iff it starts with `scheme://` (Litestream's isURL). */
export function isUrl(s: string): boolean {
  return /^\w+:\/\//.test(s);
}

export interface ParsedReplicaUrl {
  /** The scheme, lower-cased; not checked against the known replica types here. */
  type: string;
  /** URL host including any `:port` (bucket, container or sftp host); "" for file URLs. */
  host: string;
  /**
   * file: the absolute directory; sftp: the URL path as is (Litestream does not clean it);
   * others: the key prefix, cleaned, without its leading "/" (`s3://b` → ".", `s3://b/` → "").
   */
  path: string;
  /** The user name from `user[:password]@host` (abs: account name; sftp: login). */
  user?: string;
  /** The password from `user:password@host` (sftp only uses it). Never put it in a message. */
  password?: string;
  /**
   * The query options (`?endpoint=…&region=…`), decoded, in order; absent when the URL has none. Not for
   * file URLs, whose query stays part of the path as in Litestream.
   */
  query?: readonly (readonly [string, string])[];
}

/** Go's `path.Clean`: one slash, no `.`, `..` folded, no trailing slash; "" → ".". */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(seg);
  }
  const s = (rooted ? '/' : '') + out.join('/');
  return s === '' ? '.' : s;
}

/** Expands `~` and `~/…` (not `~user`) as Litestream's `expand` does. */
export function expandHome(p: string, homeDir: string): string {
  if (p !== '~' && !p.startsWith('~/')) return p;
  if (homeDir === '') {
    throw new ReplicateError('INVALID_ARGUMENT', `expanding path ${p}: no home directory available`, { details: { path: p } });
  }
  return p === '~' ? homeDir : posix.join(homeDir, p.slice(2));
}

/** Expands `~` and makes a path absolute (and clean) against `cwd`, as Go's `filepath.Abs`. */
export function absolutePath(p: string, cwd: string, homeDir: string): string {
  return posix.resolve(cwd, expandHome(p, homeDir));
}

/** The URL with any password replaced by "xxxxx" (Go's URL.Redacted), for messages. */
export function redactUrl(url: string): string {
  const m = /^([^:/?#]+:\/\/)([^/?#]*)(.*)$/s.exec(url);
  if (!m) return url;
  const at = m[2]!.lastIndexOf('@');
  if (at === -1) return url;
  const colon = m[2]!.slice(0, at).indexOf(':');
  if (colon === -1) return url;
  return `${m[1]}${m[2]!.slice(0, colon)}:xxxxx${m[2]!.slice(at)}${m[3]}`;
}

/** The parts of Go's url.URL that replica URLs use. */
interface GoUrl {
  scheme: string;
  opaque: string;
  userinfo?: string;
  user?: string;
  password?: string;
  host: string;
  /** Decoded path. */
  path: string;
  /** The path as written. */
  rawPath: string;
  rawQuery: string;
  forceQuery: boolean;
  fragment: string;
}

/** Go's unescape: %XX sequences decoded (as UTF-8); a malformed escape is an error. */
function unescape(s: string): string {
  if (!s.includes('%')) return s;
  const bad = /%(?![0-9a-fA-F]{2})/.exec(s);
  if (bad) throw new ReplicateError('INVALID_ARGUMENT', `invalid URL escape ${JSON.stringify(s.slice(bad.index, bad.index + 3))}`);
  return s.replace(/(?:%[0-9a-fA-F]{2})+/g, (run) => Buffer.from(run.replace(/%/g, ''), 'hex').toString('utf8'));
}

/** Go's url.Parse, reduced to what replica URLs need; throws an Error with Go's detail. */
function parseGoUrl(raw: string): GoUrl {
  // Go's url.Parse rejects ASCII control characters: matching them is the point.
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(raw)) throw new ReplicateError('INVALID_ARGUMENT', 'invalid control character in URL');
  const hash = raw.indexOf('#');
  const fragment = hash === -1 ? '' : raw.slice(hash + 1);
  let rest = hash === -1 ? raw : raw.slice(0, hash);
  const sm = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(rest);
  if (rest.startsWith(':')) throw new ReplicateError('INVALID_ARGUMENT', 'missing protocol scheme');
  const scheme = sm ? sm[1]!.toLowerCase() : '';
  if (sm) rest = rest.slice(sm[0].length);
  let rawQuery = '';
  let forceQuery = false;
  const q = rest.indexOf('?');
  if (q !== -1) {
    if (q === rest.length - 1) forceQuery = true;
    rawQuery = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const url: GoUrl = { scheme, opaque: '', host: '', path: '', rawPath: '', rawQuery, forceQuery, fragment };
  if (!rest.startsWith('/')) {
    if (scheme !== '') {
      url.opaque = rest; // rootless: "file:relative/dir"
      return url;
    }
    if (rest.split('/')[0]!.includes(':')) throw new ReplicateError('INVALID_ARGUMENT', 'first path segment in URL cannot contain colon');
  }
  if (rest.startsWith('//') && (scheme !== '' || !rest.startsWith('///'))) {
    const slash = rest.indexOf('/', 2);
    const authority = slash === -1 ? rest.slice(2) : rest.slice(2, slash);
    rest = slash === -1 ? '' : rest.slice(slash);
    const at = authority.lastIndexOf('@');
    url.host = parseHost(at === -1 ? authority : authority.slice(at + 1));
    if (at !== -1) {
      const userinfo = authority.slice(0, at);
      if (!/^[A-Za-z0-9\-._:~!$&'()*+,;=%@]*$/.test(userinfo)) throw new ReplicateError('INVALID_ARGUMENT', 'invalid userinfo');
      url.userinfo = userinfo;
      const colon = userinfo.indexOf(':');
      url.user = unescape(colon === -1 ? userinfo : userinfo.slice(0, colon));
      if (colon !== -1) url.password = unescape(userinfo.slice(colon + 1));
    }
  }
  url.rawPath = rest;
  url.path = unescape(rest);
  return url;
}

function parseHost(host: string): string {
  let colonPort = '';
  if (host.startsWith('[')) {
    const close = host.lastIndexOf(']');
    if (close === -1) throw new ReplicateError('INVALID_ARGUMENT', "missing ']' in host");
    colonPort = host.slice(close + 1);
  } else if (host.includes(':')) {
    colonPort = host.slice(host.lastIndexOf(':'));
  }
  if (colonPort !== '' && !/^:[0-9]*$/.test(colonPort))
    throw new ReplicateError('INVALID_ARGUMENT', `invalid port ${JSON.stringify(colonPort)} after host`);
  const bad = /[^A-Za-z0-9\-._~!$&'()*+,;=:[\]<>"%\u0080-\uffff]/.exec(host);
  if (bad) throw new ReplicateError('INVALID_ARGUMENT', `invalid character ${JSON.stringify(bad[0])} in host name`);
  return unescape(host);
}

/** Go's shouldEscape(c, encodePath) for one byte. */
function pathByteNeedsEscape(b: number): boolean {
  const c = String.fromCharCode(b);
  if (/[A-Za-z0-9\-_.~$&+,/:;=@]/.test(c)) return false;
  return true;
}

/** Go's URL.EscapedPath: the path as written when that is a valid encoding, else re-escaped. */
function escapedPath(u: GoUrl): string {
  const validAsWritten = /^[A-Za-z0-9\-_.~$&+,/:;=@!'()*[\]%]*$/.test(u.rawPath);
  if (validAsWritten) return u.rawPath;
  let out = '';
  for (const b of Buffer.from(u.path, 'utf8')) {
    out += pathByteNeedsEscape(b) ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  }
  return out;
}

/**
 * Litestream's file URL rule: drop the scheme and re-serialise the rest (Go's URL.String), then clean.
 * So the host becomes a path component (`file://tmp/y` → "/tmp/y"), the path keeps its percent-encoding
 * as written, and — as in Litestream — a query or fragment stays part of the path.
 */
function fileUrlPath(u: GoUrl): string {
  let s = '';
  if (u.opaque !== '') {
    s = u.opaque;
  } else {
    const p = escapedPath(u);
    if (u.host !== '' || u.userinfo !== undefined) {
      s += '//';
      if (u.userinfo !== undefined) s += `${u.userinfo}@`;
      s += u.host;
    }
    if (p !== '' && !p.startsWith('/') && u.host !== '') s += '/';
    if (s === '' && p.split('/')[0]!.includes(':')) s += './';
    s += p;
  }
  if (u.forceQuery || u.rawQuery !== '') s += `?${u.rawQuery}`;
  if (u.fragment !== '') s += `#${u.fragment}`;
  return s;
}

/**
 * Splits a replica URL as Litestream does (docs/config.md, Replicas). File URLs give an absolute path (relative and
 * `~` forms resolved against `cwd` / `homeDir`), or "" when the URL names no path at all.
 * Throws ReplicateError('INVALID_ARGUMENT') for a URL Go's parser rejects or one without a scheme.
 */
export function parseReplicaUrl(url: string, cwd: string, homeDir: string): ParsedReplicaUrl {
  let u: GoUrl;
  try {
    u = parseGoUrl(url);
  } catch (err) {
    throw new ReplicateError('INVALID_ARGUMENT', `invalid replica URL ${redactUrl(url)}: ${describeError(err)}`, { cause: err });
  }
  if (u.scheme === '') {
    throw new ReplicateError('INVALID_ARGUMENT', `invalid replica URL ${redactUrl(url)}: replica url scheme required`);
  }
  const who = { ...(u.user !== undefined ? { user: u.user } : {}), ...(u.password !== undefined ? { password: u.password } : {}) };
  if (u.scheme === 'file') {
    const s = fileUrlPath(u);
    return { type: 'file', host: '', path: s === '' ? '' : absolutePath(cleanPath(s), cwd, homeDir) };
  }
  // Litestream v0.3.13 ignores a query here; later versions read options from it (see replica-resolve.ts).
  const query = u.rawQuery === '' ? {} : { query: [...new URLSearchParams(u.rawQuery)] };
  if (u.scheme === 'sftp') return { type: 'sftp', host: u.host, path: u.path, ...who, ...query };
  let path = cleanPath(u.path);
  if (path.startsWith('/')) path = path.slice(1);
  return { type: u.scheme, host: u.host, path, ...who, ...query };
}

/**
 * An endpoint given without a scheme gets one, as later Litestream versions do for `?endpoint=`: http for
 * a local or private-network host (a MinIO on the LAN), https for everything else.
 */
export function endpointWithScheme(endpoint: string): string {
  if (/^https?:\/\//i.test(endpoint)) return endpoint;
  const host = (splitHostPort(endpoint)?.host ?? endpoint).replace(/^\[|\]$/g, '').toLowerCase();
  const local =
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    host.endsWith('.local') ||
    host === '::1' ||
    /^127\./.test(host) ||
    /^10\./.test(host) ||
    /^192\.168\./.test(host) ||
    /^172\.(1[6-9]|2\d|3[01])\./.test(host);
  return `${local ? 'http' : 'https'}://${endpoint}`;
}

export interface S3HostInfo {
  bucket?: string;
  region?: string;
  endpoint?: string;
  /** True for every recognised S3-compatible provider; false for "anything else" (AWS style). */
  forcePathStyle: boolean;
}

const S3_PROVIDERS: readonly { re: RegExp; region?: string; scheme?: string; endpoint: (region: string) => string }[] = [
  { re: /^(?:(.+)\.)?localhost$/, region: 'us-east-1', scheme: 'http', endpoint: () => 'localhost' },
  { re: /^(?:(.+)\.)?s3.([^.]+)\.backblazeb2.com$/, endpoint: (r) => `s3.${r}.backblazeb2.com` },
  { re: /^(?:(.+)\.)?s3.filebase.com$/, endpoint: () => 's3.filebase.com' },
  { re: /^(?:(.+)\.)?([^.]+)\.digitaloceanspaces.com$/, endpoint: (r) => `${r}.digitaloceanspaces.com` },
  { re: /^(?:(.+)\.)?s3.([^.]+)\.scw\.cloud$/, endpoint: (r) => `s3.${r}.scw.cloud` },
  { re: /^(?:(.+)\.)?([^.]+)\.linodeobjects.com$/, endpoint: (r) => `${r}.linodeobjects.com` },
];

/** Go's net.SplitHostPort, or undefined when `s` has no (valid) port part. */
function splitHostPort(s: string): { host: string; port: string } | undefined {
  if (s.startsWith('[')) {
    const m = /^\[([^\]]*)\]:([^:]*)$/.exec(s);
    return m ? { host: m[1]!, port: m[2]! } : undefined;
  }
  const parts = s.split(':');
  return parts.length === 2 ? { host: parts[0]!, port: parts[1]! } : undefined;
}

/**
 * Litestream's `s3.ParseHost` (the URL host presets of docs/config.md, Replicas): bucket, region and endpoint from an s3 URL host for the
 * providers it recognises (MinIO on localhost, Backblaze, Filebase, DigitalOcean, Scaleway, Linode);
 * anything else is the bucket name, port dropped. The regexes are Litestream's, unescaped dots included.
 */
export function parseS3Host(hostPort: string): S3HostInfo {
  const split = splitHostPort(hostPort);
  const host = split?.host ?? hostPort;
  const port = split?.port ?? '';
  for (const p of S3_PROVIDERS) {
    const m = p.re.exec(host);
    if (!m) continue;
    const region = p.region ?? (m[2] === undefined ? '' : m[2]);
    let endpoint = p.endpoint(region);
    if (port !== '') endpoint += `:${port}`;
    return {
      ...(m[1] ? { bucket: m[1] } : {}),
      ...(region !== '' ? { region } : {}),
      endpoint: `${p.scheme ?? 'https'}://${endpoint}`,
      forcePathStyle: true,
    };
  }
  return { ...(host !== '' ? { bucket: host } : {}), forcePathStyle: false };
}
