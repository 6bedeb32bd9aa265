/**
 * Opening one SSH session with its SFTP channel for the sftp backend: the TCP connection, the SSH
 * handshake with the host-key check (ssh-host-keys.ts), the login, the channel, all under one time
 * limit, and the errors each step fails with (their own codes for a host key, a login, a server that
 * cannot be reached; never the password). Separate from sftp-connection.ts, which keeps such a session
 * for a client's requests: sharing it, the request timeout, reconnecting after it was lost.
 */
import { readFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import type { Client, ConnectConfig, ServerHostKeyAlgorithm, SFTPWrapper } from 'ssh2';
import { describeError, errnoCode, ReplicateError, type ErrorCode } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import {
  blobKeyType,
  fingerprint,
  judgeHostKey,
  knownHostsKeys,
  knownHostsName,
  preferredHostKeyAlgorithms,
  type HostKeyVerdict,
  type HostPublicKey,
  type TrustedHostKeys,
} from './ssh-host-keys.js';

/** How the server's host key is checked. */
export type HostKeyPolicy =
  | { kind: 'keys'; keys: readonly HostPublicKey[] }
  | { kind: 'known-hosts'; path: string }
  /** No check (Litestream v0.3.13's behaviour): for test setups only. */
  | { kind: 'insecure' };

export interface SftpConnectionOptions {
  host: string;
  port: number;
  user: string;
  /** A secret: never put in a message. */
  password?: string;
  keyPath?: string;
  hostKeys: HostKeyPolicy;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
}

export interface SftpSession {
  ssh: Client;
  sftp: SFTPWrapper;
  sock: Socket;
  closed: boolean;
  /** Requests without an answer yet: how to fail each, and how long it may go without any answer. */
  pending: Map<(err: unknown) => void, { doing: string; limitMs: number }>;
  /** Monotonic time of the last answer (or of the moment the connection became busy). */
  lastAnswer: number;
  watchdog: NodeJS.Timeout | undefined;
}

type Ssh2 = typeof import('ssh2');
let ssh2Module: Promise<Ssh2> | undefined;
// Loaded on first use: only sftp replicas need it.
const loadSsh2 = (): Promise<Ssh2> => (ssh2Module ??= import('ssh2').then((m) => (m as { default?: Ssh2 }).default ?? m));

/**
 * Opens one session, within connectTimeoutMs from the start of the TCP connection to the SFTP channel.
 * `onClosed` hears of every close or failure of the SSH connection or its channel, so that the owner
 * stops handing out a session that is gone.
 */
export async function openSftpSession(
  o: SftpConnectionOptions,
  where: string,
  onClosed: (s: SftpSession | undefined) => void,
): Promise<SftpSession> {
  const { Client } = await loadSsh2();
  const privateKey = o.keyPath === undefined ? undefined : await readKey(o.keyPath);
  const trust = await trustedKeys(o);
  return new Promise<SftpSession>((resolve, reject) => {
    const ssh = new Client();
    const sock = new Socket();
    let session: SftpSession | undefined;
    let offered: { key: Buffer; verdict: HostKeyVerdict } | undefined;
    let settled = false;
    const fail = (err: ReplicateError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () =>
        fail(
          connectError(
            where,
            'UNREACHABLE',
            `no SSH session within ${o.connectTimeoutMs} ms (${sock.connecting ? 'the TCP connection did not open' : 'the server did not complete the SSH handshake and login'})`,
          ),
        ),
      o.connectTimeoutMs,
    );
    const markClosed = () => {
      if (session) session.closed = true;
      onClosed(session);
    };
    ssh.on('error', (err: Error & { level?: string }) => {
      markClosed();
      if (!settled)
        fail(offered && !offered.verdict.ok ? hostKeyError(o, where, offered.key, offered.verdict, trust) : classify(o, where, err));
    });
    ssh.on('close', () => {
      markClosed();
      fail(
        offered && !offered.verdict.ok
          ? hostKeyError(o, where, offered.key, offered.verdict, trust)
          : connectError(where, 'UNREACHABLE', 'the server closed the connection during the SSH handshake'),
      );
    });
    ssh.on('ready', () => {
      ssh.sftp((err, sftp) => {
        if (err)
          return fail(
            connectError(where, 'IO', `opening the SFTP channel: ${describeError(err)} (does the server offer the sftp subsystem?)`, err),
          );
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        session = { ssh, sftp, sock, closed: false, pending: new Map(), lastAnswer: monotonicMs(), watchdog: undefined };
        sftp.on('close', markClosed);
        sftp.on('error', markClosed);
        sock.unref();
        resolve(session);
      });
    });
    sock.setNoDelay(true);
    // TCP keepalives (not SSH ones, whose timer would keep the process alive) keep an idle connection
    // through NATs and firewalls, and let the kernel notice a peer that is gone.
    sock.setKeepAlive(true, 15_000);
    sock.connect({ host: o.host, port: o.port });
    const config: ConnectConfig = {
      sock,
      username: o.user,
      ...(o.password !== undefined ? { password: o.password } : {}),
      ...(privateKey !== undefined ? { privateKey } : {}),
      readyTimeout: 0, // ours above covers the whole opening
      keepaliveInterval: 0,
      hostVerifier: (key: Buffer) => {
        const verdict: HostKeyVerdict = trust === undefined ? { ok: true } : judgeHostKey(trust, key);
        offered = { key, verdict };
        return verdict.ok;
      },
      ...(trust !== undefined && trust.trusted.length > 0
        ? { algorithms: { serverHostKey: preferredHostKeyAlgorithms(trust.trusted) as ServerHostKeyAlgorithm[] } }
        : {}),
    };
    try {
      ssh.connect(config);
    } catch (err) {
      // ssh2 parses the private key here.
      fail(
        new ReplicateError(
          'CONFIG',
          `[sftp] key-path ${o.keyPath}: ${describeError(err)} (an unencrypted OpenSSH or PEM private key is needed)`,
          { cause: err, details: { keyPath: o.keyPath } },
        ),
      );
    }
  });
}

async function readKey(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ReplicateError('CONFIG', `[sftp] reading key-path ${path}: ${describeError(err)}`, {
      cause: err,
      details: { keyPath: path },
    });
  }
}

/** The keys to trust (read at every connection, so an edited known_hosts applies), or undefined: no check. */
async function trustedKeys(o: SftpConnectionOptions): Promise<TrustedHostKeys | undefined> {
  const p = o.hostKeys;
  if (p.kind === 'insecure') return undefined;
  if (p.kind === 'keys') return { trusted: p.keys, revoked: [] };
  let text = '';
  try {
    text = await readFile(p.path, 'utf8');
  } catch (err) {
    // No file: every key is unknown, and the error says where the file was looked for.
    if (errnoCode(err) !== 'ENOENT')
      throw new ReplicateError('CONFIG', `[sftp] reading known-hosts-path ${p.path}: ${describeError(err)}`, {
        cause: err,
        details: { knownHostsPath: p.path },
      });
  }
  return knownHostsKeys(text, knownHostsName(o.host, o.port));
}

function classify(o: SftpConnectionOptions, where: string, err: Error & { level?: string }): ReplicateError {
  switch (err.level) {
    case 'client-authentication':
      return connectError(
        where,
        'AUTH_FAILED',
        `the server refused the login of ${o.user} (tried: ${[o.password !== undefined ? 'password' : undefined, o.keyPath !== undefined ? `key ${o.keyPath}` : undefined].filter(Boolean).join(', ') || 'no password or key-path configured'})`,
        err,
      );
    case 'client-socket':
    case 'client-dns':
    case 'client-timeout':
      return connectError(where, 'UNREACHABLE', describeError(err), err);
    default:
      if (/before handshake/i.test(err.message)) return connectError(where, 'UNREACHABLE', describeError(err), err);
      return connectError(where, 'IO', describeError(err), err);
  }
}

function hostKeyError(
  o: SftpConnectionOptions,
  where: string,
  key: Buffer,
  verdict: HostKeyVerdict,
  trust: TrustedHostKeys | undefined,
): ReplicateError {
  const p = o.hostKeys;
  const name = knownHostsName(o.host, o.port);
  const offered = `${blobKeyType(key) ?? 'key'} ${fingerprint(key)}`;
  const source = p.kind === 'keys' ? "the replica's host-key" : `known_hosts file ${p.kind === 'known-hosts' ? p.path : ''}`;
  const reason = verdict.ok ? 'unknown' : verdict.reason;
  let text: string;
  if (reason === 'revoked') text = `the server offered host key ${offered}, which ${source} marks @revoked`;
  else if (reason === 'changed') {
    const listed = (trust?.trusted ?? []).map((k) => `${k.type} ${fingerprint(k.blob)}`).join(', ');
    text = `the server's host key does not match: it offered ${offered}, but ${source} lists ${listed || 'another key'} for ${name}; the server may be an impostor, or its key was replaced (then update ${p.kind === 'keys' ? 'host-key' : 'known_hosts'})`;
  } else {
    text = `the server's host key is unknown: it offered ${offered}, and ${source} has no key for ${name}; check that fingerprint with the server's administrator, then add the key (ssh-keyscan -p ${o.port} ${o.host}) or set host-key`;
  }
  return new ReplicateError('HOST_KEY_NOT_TRUSTED', `[sftp] connecting to ${where}: ${text}`, {
    details: { server: where, fingerprint: fingerprint(key), reason },
  });
}

function connectError(where: string, code: ErrorCode, detail: string, cause?: unknown): ReplicateError {
  return new ReplicateError(code, `[sftp] connecting to ${where}: ${detail}`, {
    ...(cause !== undefined ? { cause } : {}),
    details: { server: where },
  });
}
