/**
 * Replica URLs (`file:///path`, `s3://bucket/path`, `gcs://bucket/path`, `abs://account@container/path`)
 * parsed as Litestream v0.3.13 parses them (spec §2.2).
 */
import { posix } from 'node:path';
import { ReplicateError } from '../errors.js';

/** A string "is a URL" iff it starts with `scheme://` (Litestream's isURL). */
export function isUrl(s: string): boolean {
  return /^\w+:\/\//.test(s);
}

export interface ParsedReplicaUrl {
  type: string;
  /** URL host including any port (bucket or container); empty for file URLs. */
  host: string;
  /** file: absolute path; others: key prefix without a leading slash ("" or "." for the root). */
  path: string;
  /** abs: the account name from `account@container`. */
  user?: string;
}

/** Expands `~` and `~/…` and makes a path absolute against `cwd`. */
export function absolutePath(p: string, cwd: string, homeDir: string): string {
  return posix.resolve(cwd, expandHome(p, homeDir));
}

export function expandHome(p: string, homeDir: string): string {
  if (p === '~') return homeDir;
  if (p.startsWith('~/')) return posix.join(homeDir, p.slice(2));
  return p;
}

/** Go's path.Clean. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  return posix.normalize(p).replace(/(.)\/$/, '$1');
}

export function parseReplicaUrl(url: string, cwd: string, homeDir: string): ParsedReplicaUrl {
  const m = /^(\w+):\/\/([^/]*)(.*)$/s.exec(url);
  if (!m) throw new ReplicateError('INVALID_ARGUMENT', `invalid replica URL "${url}": want scheme://host/path`);
  const type = m[1]!.toLowerCase();
  const authority = m[2]!;
  const rest = m[3]!.replace(/[?#].*$/s, ''); // query strings are ignored, as in Litestream v0.3.13

  if (type === 'file') {
    // Litestream strips the scheme and cleans the rest, so the "host" becomes a path component:
    // file:///tmp/x -> /tmp/x, file://tmp/y -> /tmp/y.
    const p = cleanPath(`/${authority}${rest}`);
    return { type, host: '', path: absolutePath(decodeURIComponent(p), cwd, homeDir) };
  }

  let host = authority;
  let user: string | undefined;
  const at = authority.lastIndexOf('@');
  if (at !== -1) {
    user = decodeURIComponent(authority.slice(0, at).split(':')[0]!);
    host = authority.slice(at + 1);
  }
  let path = rest === '' ? '.' : cleanPath(decodeURIComponent(rest));
  if (path.startsWith('/')) path = path.slice(1);
  return { type, host, path, ...(user !== undefined ? { user } : {}) };
}
