/** Host key trust for sftp replicas: public key lines and known_hosts, read as OpenSSH reads them. */
import { describe, expect, it } from 'vitest';
import {
  fingerprint,
  judgeHostKey,
  knownHostsKeys,
  knownHostsName,
  parseHostKeyLines,
  preferredHostKeyAlgorithms,
} from '../../../src/client/ssh-host-keys.js';

// Made with ssh-keygen; the fingerprints are `ssh-keygen -lf`'s.
const ED = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKVkBcB1F9n9UCRZp5mTzF3s6TI9VRHlXhR6xOKczrL0';
const ED_FP = 'SHA256:3JmLusU+mtScBBwKT6uPhncz+0XapvdDAXf/nYMSGww';
const EC =
  'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBDGvyJioYtrvXYyybtjSLv/khjFzUSHrXVb9n87/onLCLpE/q9hdqS25Ha6G1nU6lBFc/tYLKBr/+dgVfR3gFW0=';
const EC_FP = 'SHA256:mh6LmtOHdBpR1Gpf6IY+XMX9Yzwemdo5ehoQDhiEZUE';
/** `[db.example.com]:2222 <ED>` hashed by `ssh-keygen -H`. */
const HASHED = `|1|5Kqy/knlOdx+OnTA2EW0fHzHRxc=|/XRx5qbfyWLsBiIBzdZPQ+W3qY4= ${ED}`;

const blob = (line: string) => Buffer.from(line.split(' ')[1]!, 'base64');

describe('host key lines (host-key)', () => {
  it('reads a .pub line, ssh-keyscan output and several lines; fingerprints as ssh-keygen prints them', () => {
    const [a] = parseHostKeyLines(`${ED} root@server\n`);
    expect(a!.type).toBe('ssh-ed25519');
    expect(fingerprint(a!.blob)).toBe(ED_FP);
    const keys = parseHostKeyLines(`# ssh-keyscan db.example.com\ndb.example.com ${EC}\n\n${ED}`);
    expect(keys.map((k) => [k.type, fingerprint(k.blob)])).toEqual([
      ['ecdsa-sha2-nistp256', EC_FP],
      ['ssh-ed25519', ED_FP],
    ]);
  });

  it('refuses what is not a key: no key at all, a type that does not match the blob, broken base64', () => {
    expect(() => parseHostKeyLines('')).toThrow('no public key in it');
    expect(() => parseHostKeyLines(`${ED}\nhello world`)).toThrow(/line 2 is not an SSH public key/);
    expect(() => parseHostKeyLines(ED.replace('ssh-ed25519', 'ssh-rsa'))).toThrow(/line 1/);
    expect(() => parseHostKeyLines('ssh-ed25519 AAAA$$$')).toThrow(/line 1/);
  });
});

describe('known_hosts', () => {
  it('names a host as OpenSSH does: bare on port 22, [host]:port otherwise', () => {
    expect(knownHostsName('db.example.com', 22)).toBe('db.example.com');
    expect(knownHostsName('127.0.0.1', 2222)).toBe('[127.0.0.1]:2222');
  });

  it('matches plain names, comma lists, wildcards, negations and hashed names', () => {
    const text = [
      '# comment',
      `db.example.com,10.0.0.5 ${ED}`,
      `*.example.org,!bad.example.org ${EC}`,
      `[127.0.0.1]:2222 ${EC} a comment`,
      HASHED,
      'garbage line',
    ].join('\n');
    const types = (name: string) => knownHostsKeys(text, name).trusted.map((k) => k.type);
    expect(types('db.example.com')).toEqual(['ssh-ed25519']);
    expect(types('DB.Example.COM')).toEqual(['ssh-ed25519']);
    expect(types('10.0.0.5')).toEqual(['ssh-ed25519']);
    expect(types('a.example.org')).toEqual(['ecdsa-sha2-nistp256']);
    expect(types('bad.example.org')).toEqual([]);
    expect(types('[127.0.0.1]:2222')).toEqual(['ecdsa-sha2-nistp256']);
    expect(types('127.0.0.1')).toEqual([]);
    expect(types('[db.example.com]:2222')).toEqual(['ssh-ed25519']); // the hashed line
    expect(types('[db.example.com]:2223')).toEqual([]);
  });

  it('judges an offered key: trusted, unknown (no key for the host), changed (another key), revoked', () => {
    const text = `db.example.com ${ED}\n@revoked * ${EC}\n@cert-authority *.example.com ${ED}\n`;
    const keys = knownHostsKeys(text, 'db.example.com');
    expect(judgeHostKey(keys, blob(ED))).toEqual({ ok: true });
    expect(judgeHostKey(keys, blob(EC))).toEqual({ ok: false, reason: 'revoked' });
    expect(judgeHostKey(knownHostsKeys(`db.example.com ${EC}`, 'db.example.com'), blob(ED))).toEqual({ ok: false, reason: 'changed' });
    // A @cert-authority line is no host key (certificates are not supported).
    expect(judgeHostKey(knownHostsKeys(text, 'x.example.com'), blob(ED))).toEqual({ ok: false, reason: 'unknown' });
  });

  it('offers the algorithms of the known keys first (RSA keys: its SHA-2 signatures)', () => {
    expect(preferredHostKeyAlgorithms(parseHostKeyLines(EC)).slice(0, 2)).toEqual(['ecdsa-sha2-nistp256', 'ssh-ed25519']);
    const rsa = { type: 'ssh-rsa', blob: Buffer.alloc(0) };
    expect(preferredHostKeyAlgorithms([rsa]).slice(0, 3)).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    expect(preferredHostKeyAlgorithms([rsa])).toHaveLength(7);
  });
});
