/**
 * One SSH connection with its SFTP channel, opened on first use, shared by every request of a client,
 * and opened again after it was lost (a server restart, a dropped network, a request that timed out).
 *
 * - Nothing waits forever: opening the session (TCP, SSH handshake, login, SFTP channel) has a time
 *   limit, and a connection with requests waiting that gets no answer for the request timeout is
 *   dropped, so those requests fail at once and the next one reconnects.
 * - Requests that only read or delete are tried once more on a fresh connection when the one they
 *   were sent on turns out to be dead (it was lost while idle); uploads are not (their body is spent),
 *   the replica's own retries take over.
 * - The host key is checked before anything is sent (see ssh-host-keys.ts); the errors for a host key,
 *   a login, or a server that cannot be reached have their own codes, and never carry the password.
 * - The socket keeps the process alive only while a request is in flight: a command that is done
 *   exits, whether or not it closed the client.
 */
import { readFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import type { Client, ConnectConfig, ServerHostKeyAlgorithm, SFTPWrapper } from 'ssh2';
import { abortError, describeError, errnoCode, ReplicateError, type ErrorCode } from '../errors.js';
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

/** An SFTP status (SSH_FX_*) from the server, as ssh2 reports it: `code` is the number. */
export const SFTP_STATUS = { EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4 } as const;

export function sftpStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

interface Session {
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

/** The error an established connection's pending requests get when it goes away. */
const CONNECTION_LOST = /No response from server|Not connected|Channel not open|Unable to open channel|ECONNRESET|EPIPE|socket/i;

export class SftpConnection {
  /** `user@host:port`, for messages. */
  readonly where: string;
  private live: Session | undefined;
  private opening: Promise<Session> | undefined;

  constructor(private readonly o: SftpConnectionOptions) {
    this.where = `${o.user}@${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`;
  }

  /**
   * Whether the server offers `ext` (e.g. `posix-rename@openssh.com`) on the current session. ssh2 keeps
   * the server's extension list in a private field (it has no public accessor); without it the answer is
   * no, and the callers take their fallback paths (a plain rename, no fsync).
   */
  async supports(ext: string): Promise<boolean> {
    const s = await this.session();
    return (s.sftp as unknown as { _extensions?: Record<string, string> })._extensions?.[ext] !== undefined;
  }

  /**
   * Sends one request: `fn` gets the SFTP channel and a callback. Rejects with the server's status error
   * as ssh2 gives it (see sftpStatus), or a ReplicateError for the connection (timeouts, a lost
   * connection, aborts, and every failure to open one). `retry`: the request is idempotent and may be
   * sent again on a fresh connection when the one it went out on was already dead.
   */
  async request<T>(
    doing: string,
    fn: (sftp: SFTPWrapper, cb: (err: Error | null | undefined, value?: T) => void) => void,
    opts: { signal?: AbortSignal; retry?: boolean; slowMs?: number } = {},
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (opts.signal?.aborted) throw abortError(opts.signal);
      const reused = this.live !== undefined && !this.live.closed;
      const s = await this.session();
      try {
        return await this.send(s, doing, fn, opts.signal, Math.max(this.o.requestTimeoutMs, opts.slowMs ?? 0));
      } catch (err) {
        if (err instanceof ReplicateError || !(await this.lost(s, err))) throw err;
        if (opts.retry && reused && attempt === 1) continue;
        throw new ReplicateError('IO', `[sftp] ${doing}: the connection to ${this.where} was lost (${describeError(err)})`, {
          cause: err,
          details: { server: this.where },
        });
      }
    }
  }

  /** Ends the connection (the next request opens a new one). */
  close(): void {
    const s = this.live;
    this.live = undefined;
    if (s) this.drop(s);
  }

  /**
   * The request timeout is "no answer at all for requestTimeoutMs while requests are waiting", not "this
   * request took longer than that": sixteen writes in flight on a slow link each take long, but answers
   * keep coming. A request may allow itself longer (an fsync of a large file).
   */
  private send<T>(
    s: Session,
    doing: string,
    fn: (sftp: SFTPWrapper, cb: (err: Error | null | undefined, value?: T) => void) => void,
    signal: AbortSignal | undefined,
    limitMs: number,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const finish = (err: unknown, value?: T) => {
        if (done) return;
        done = true;
        s.pending.delete(finish);
        signal?.removeEventListener('abort', onAbort);
        if (s.pending.size === 0) {
          clearTimeout(s.watchdog);
          s.watchdog = undefined;
          if (!s.closed) s.sock.unref();
        }
        // What ssh2 answered or threw (or our own ReplicateError), passed on as it is.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        if (err !== undefined && err !== null) reject(err);
        else resolve(value as T);
      };
      const onAbort = () => finish(abortError(signal));
      signal?.addEventListener('abort', onAbort, { once: true });
      if (s.pending.size === 0) {
        s.lastAnswer = monotonicMs();
        s.sock.ref();
      }
      s.pending.set(finish, { doing, limitMs });
      this.watch(s);
      try {
        fn(s.sftp, (err, value) => {
          s.lastAnswer = monotonicMs();
          finish(err ?? undefined, value);
        });
      } catch (err) {
        // ssh2 throws for what the server does not offer, and when the channel is gone.
        finish(err);
      }
    });
  }

  /** Drops the connection when it has gone without any answer for longer than its waiting requests allow. */
  private watch(s: Session): void {
    if (s.watchdog !== undefined || s.pending.size === 0) return;
    const limit = Math.max(...[...s.pending.values()].map((p) => p.limitMs));
    const idle = monotonicMs() - s.lastAnswer;
    s.watchdog = setTimeout(
      () => {
        s.watchdog = undefined;
        if (s.pending.size === 0) return;
        const still = Math.max(...[...s.pending.values()].map((p) => p.limitMs));
        const silent = monotonicMs() - s.lastAnswer;
        if (silent < still) return this.watch(s);
        // The server or the network stopped answering: drop the connection, so every request waiting on
        // it fails now, and the next one connects again.
        this.drop(s);
        for (const [fail, p] of [...s.pending]) {
          fail(
            new ReplicateError(
              'IO',
              `[sftp] ${p.doing}: no answer from ${this.where} for ${Math.round(silent)} ms; the connection was dropped (the next request opens a new one)`,
              { details: { server: this.where } },
            ),
          );
        }
      },
      Math.max(0, limit - idle),
    );
  }

  /** Whether `err` came from the connection going away rather than from the server's answer. */
  private async lost(s: Session, err: unknown): Promise<boolean> {
    if (sftpStatus(err) !== undefined) return false;
    await new Promise((r) => setImmediate(r)); // the close events follow the failed callbacks
    return s.closed || CONNECTION_LOST.test(describeError(err));
  }

  private drop(s: Session): void {
    s.closed = true;
    clearTimeout(s.watchdog);
    s.watchdog = undefined;
    if (this.live === s) this.live = undefined;
    s.sock.destroy();
  }

  private session(): Promise<Session> {
    if (this.live && !this.live.closed) return Promise.resolve(this.live);
    this.opening ??= this.open()
      .then((s) => {
        this.live = s;
        return s;
      })
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }

  private async open(): Promise<Session> {
    const { Client } = await loadSsh2();
    const privateKey = this.o.keyPath === undefined ? undefined : await this.readKey(this.o.keyPath);
    const trust = await this.trustedKeys();
    return new Promise<Session>((resolve, reject) => {
      const ssh = new Client();
      const sock = new Socket();
      let session: Session | undefined;
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
            this.connectError(
              'UNREACHABLE',
              `no SSH session within ${this.o.connectTimeoutMs} ms (${sock.connecting ? 'the TCP connection did not open' : 'the server did not complete the SSH handshake and login'})`,
            ),
          ),
        this.o.connectTimeoutMs,
      );
      const markClosed = () => {
        if (session) session.closed = true;
        if (this.live === session) this.live = undefined;
      };
      ssh.on('error', (err: Error & { level?: string }) => {
        markClosed();
        if (!settled) fail(offered && !offered.verdict.ok ? this.hostKeyError(offered.key, offered.verdict, trust) : this.classify(err));
      });
      ssh.on('close', () => {
        markClosed();
        fail(
          offered && !offered.verdict.ok
            ? this.hostKeyError(offered.key, offered.verdict, trust)
            : this.connectError('UNREACHABLE', 'the server closed the connection during the SSH handshake'),
        );
      });
      ssh.on('ready', () => {
        ssh.sftp((err, sftp) => {
          if (err)
            return fail(
              this.connectError('IO', `opening the SFTP channel: ${describeError(err)} (does the server offer the sftp subsystem?)`, err),
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
      sock.connect({ host: this.o.host, port: this.o.port });
      const config: ConnectConfig = {
        sock,
        username: this.o.user,
        ...(this.o.password !== undefined ? { password: this.o.password } : {}),
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
            `[sftp] key-path ${this.o.keyPath}: ${describeError(err)} (an unencrypted OpenSSH or PEM private key is needed)`,
            { cause: err, details: { keyPath: this.o.keyPath } },
          ),
        );
      }
    });
  }

  private async readKey(path: string): Promise<Buffer> {
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
  private async trustedKeys(): Promise<TrustedHostKeys | undefined> {
    const p = this.o.hostKeys;
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
    return knownHostsKeys(text, knownHostsName(this.o.host, this.o.port));
  }

  private classify(err: Error & { level?: string }): ReplicateError {
    switch (err.level) {
      case 'client-authentication':
        return this.connectError(
          'AUTH_FAILED',
          `the server refused the login of ${this.o.user} (tried: ${[this.o.password !== undefined ? 'password' : undefined, this.o.keyPath !== undefined ? `key ${this.o.keyPath}` : undefined].filter(Boolean).join(', ') || 'no password or key-path configured'})`,
          err,
        );
      case 'client-socket':
      case 'client-dns':
      case 'client-timeout':
        return this.connectError('UNREACHABLE', describeError(err), err);
      default:
        if (/before handshake/i.test(err.message)) return this.connectError('UNREACHABLE', describeError(err), err);
        return this.connectError('IO', describeError(err), err);
    }
  }

  private hostKeyError(key: Buffer, verdict: HostKeyVerdict, trust: TrustedHostKeys | undefined): ReplicateError {
    const p = this.o.hostKeys;
    const name = knownHostsName(this.o.host, this.o.port);
    const offered = `${blobKeyType(key) ?? 'key'} ${fingerprint(key)}`;
    const source = p.kind === 'keys' ? "the replica's host-key" : `known_hosts file ${p.kind === 'known-hosts' ? p.path : ''}`;
    const reason = verdict.ok ? 'unknown' : verdict.reason;
    let text: string;
    if (reason === 'revoked') text = `the server offered host key ${offered}, which ${source} marks @revoked`;
    else if (reason === 'changed') {
      const listed = (trust?.trusted ?? []).map((k) => `${k.type} ${fingerprint(k.blob)}`).join(', ');
      text = `the server's host key does not match: it offered ${offered}, but ${source} lists ${listed || 'another key'} for ${name}; the server may be an impostor, or its key was replaced (then update ${p.kind === 'keys' ? 'host-key' : 'known_hosts'})`;
    } else {
      text = `the server's host key is unknown: it offered ${offered}, and ${source} has no key for ${name}; check that fingerprint with the server's administrator, then add the key (ssh-keyscan -p ${this.o.port} ${this.o.host}) or set host-key`;
    }
    return new ReplicateError('HOST_KEY_NOT_TRUSTED', `[sftp] connecting to ${this.where}: ${text}`, {
      details: { server: this.where, fingerprint: fingerprint(key), reason },
    });
  }

  private connectError(code: ErrorCode, detail: string, cause?: unknown): ReplicateError {
    return new ReplicateError(code, `[sftp] connecting to ${this.where}: ${detail}`, {
      ...(cause !== undefined ? { cause } : {}),
      details: { server: this.where },
    });
  }
}
