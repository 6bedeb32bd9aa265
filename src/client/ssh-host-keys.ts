/**
 * Which SSH host keys to trust for an sftp replica: a public key line given in the config (`host-key`),
 * or the entries of a known_hosts file for the host (`known-hosts-path`, default ~/.ssh/known_hosts),
 * read as OpenSSH reads them (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"): comma-separated host patterns
 * with `*`/`?` wildcards and `!` negation, `[host]:port` for a port other than 22, hashed names
 * (`|1|salt|hash`, HMAC-SHA1), and the `@revoked` marker. `@cert-authority` lines are skipped (host
 * certificates are not supported), as are lines that do not parse.
 *
 * Litestream v0.3.13 accepts any host key; we do not (see docs/config.md, sftp).
 */
import { createHash, createHmac } from 'node:crypto';
import { ReplicateError } from '../errors.js';

export interface HostPublicKey {
  /** The key type named inside the key blob (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …). */
  readonly type: string;
  /** The key in SSH wire format (what the server sends during the handshake). */
  readonly blob: Buffer;
}

export interface TrustedHostKeys {
  readonly trusted: readonly HostPublicKey[];
  readonly revoked: readonly HostPublicKey[];
}

/** `SHA256:…`: the fingerprint OpenSSH prints (`ssh-keygen -lf`), base64 without padding. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type written at the start of a key blob, or undefined when the blob is not one. */
export function blobKeyType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const n = blob.readUInt32BE(0);
  if (n < 1 || n > 64 || 4 + n > blob.length) return undefined;
  const type = blob.subarray(4, 4 + n).toString('latin1');
  return /^[\x21-\x7e]+$/.test(type) ? type : undefined;
}

/** A key written as `TYPE BASE64`, checked: the blob names the same type. */
function keyFromFields(type: string | undefined, base64: string | undefined): HostPublicKey | undefined {
  if (type === undefined || base64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return undefined;
  const blob = Buffer.from(base64, 'base64');
  return blobKeyType(blob) === type ? { type, blob } : undefined;
}

/**
 * The key(s) of a `host-key` value: one public key per line, each `TYPE BASE64 [comment]` (a `.pub`
 * file's line, or `ssh-keyscan`'s output, whose leading host name is skipped). Throws INVALID_ARGUMENT
 * naming the line (never its content beyond the key type) when a line holds no key.
 */
export function parseHostKeyLines(text: string): HostPublicKey[] {
  const keys: HostPublicKey[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    const at = fields.findIndex((f, j) => keyFromFields(f, fields[j + 1]) !== undefined);
    if (at === -1)
      throw new ReplicateError(
        'INVALID_ARGUMENT',
        `line ${i + 1} is not an SSH public key ("TYPE BASE64", e.g. the server's /etc/ssh/ssh_host_ed25519_key.pub)`,
      );
    keys.push(keyFromFields(fields[at], fields[at + 1])!);
  });
  if (keys.length === 0) throw new ReplicateError('INVALID_ARGUMENT', 'no public key in it');
  return keys;
}

/** How a host is named in known_hosts: `host`, or `[host]:port` for a port other than 22. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** OpenSSH's match_pattern: `*` any run, `?` any one character; case-insensitive for host names. */
function matchPattern(name: string, pattern: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    'i',
  );
  return re.test(name);
}

function hashedMatch(name: string, field: string): boolean {
  const m = /^\|1\|([A-Za-z0-9+/=]+)\|([A-Za-z0-9+/=]+)$/.exec(field);
  if (!m) return false;
  const mac = createHmac('sha1', Buffer.from(m[1]!, 'base64')).update(name).digest();
  return mac.equals(Buffer.from(m[2]!, 'base64'));
}

/** Whether a known_hosts host field names `name`: a hashed name, or patterns with negation. */
function hostFieldMatches(name: string, field: string): boolean {
  if (field.startsWith('|')) return hashedMatch(name, field);
  let matched = false;
  for (const pattern of field.split(',')) {
    if (pattern.startsWith('!')) {
      if (matchPattern(name, pattern.slice(1))) return false;
    } else if (matchPattern(name, pattern)) {
      matched = true;
    }
  }
  return matched;
}

/** The keys a known_hosts text lists for `name` (see knownHostsName), trusted and revoked. */
export function knownHostsKeys(text: string, name: string): TrustedHostKeys {
  const trusted: HostPublicKey[] = [];
  const revoked: HostPublicKey[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: string | undefined;
    if (fields[0]!.startsWith('@')) marker = fields.shift();
    if (marker !== undefined && marker !== '@revoked') continue; // @cert-authority: certificates are not supported
    const [hosts, type, base64] = fields;
    if (hosts === undefined) continue;
    const key = keyFromFields(type, base64);
    if (key === undefined) continue;
    // A revoked key is revoked whatever host it is written for (as OpenSSH does with `*`).
    if (marker === '@revoked') revoked.push(key);
    else if (hostFieldMatches(name, hosts)) trusted.push(key);
  }
  return { trusted, revoked };
}

export type HostKeyVerdict = { ok: true } | { ok: false; reason: 'unknown' | 'changed' | 'revoked' };

/** Whether the key a server offered is one of the trusted ones (and not revoked). */
export function judgeHostKey(keys: TrustedHostKeys, offered: Buffer): HostKeyVerdict {
  if (keys.revoked.some((k) => k.blob.equals(offered))) return { ok: false, reason: 'revoked' };
  if (keys.trusted.some((k) => k.blob.equals(offered))) return { ok: true };
  return { ok: false, reason: keys.trusted.length === 0 ? 'unknown' : 'changed' };
}

/** The host key algorithms ssh2 can negotiate, in its default order of preference. */
const HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

/**
 * The host key algorithms to offer, those of the trusted keys first (as OpenSSH orders them): a server
 * with several host keys then shows the one we know, not another one we would have to reject.
 */
export function preferredHostKeyAlgorithms(trusted: readonly HostPublicKey[]): string[] {
  const first = new Set<string>();
  for (const k of trusted) {
    if (k.type === 'ssh-rsa') ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'].forEach((a) => first.add(a));
    else if (HOST_KEY_ALGORITHMS.includes(k.type)) first.add(k.type);
  }
  return [...first, ...HOST_KEY_ALGORITHMS.filter((a) => !first.has(a))];
}
