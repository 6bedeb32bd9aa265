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
 * - Opening a session (the host-key check before anything is sent, the login, and the errors of each
 *   step, which have their own codes and never carry the password) is sftp-connect.ts's.
 * - The socket keeps the process alive only while a request is in flight: a command that is done
 *   exits, whether or not it closed the client.
 */
import type { SFTPWrapper } from 'ssh2';
import { abortError, describeError, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import { openSftpSession, type SftpConnectionOptions, type SftpSession } from './sftp-connect.js';

/** An SFTP status (SSH_FX_*) from the server, as ssh2 reports it: `code` is the number. */
export const SFTP_STATUS = { EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4 } as const;

export function sftpStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The error an established connection's pending requests get when it goes away. */
const CONNECTION_LOST = /No response from server|Not connected|Channel not open|Unable to open channel|ECONNRESET|EPIPE|socket/i;

export class SftpConnection {
  /** `user@host:port`, for messages. */
  readonly where: string;
  private live: SftpSession | undefined;
  private opening: Promise<SftpSession> | undefined;

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
    s: SftpSession,
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
  private watch(s: SftpSession): void {
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
  private async lost(s: SftpSession, err: unknown): Promise<boolean> {
    if (sftpStatus(err) !== undefined) return false;
    await new Promise((r) => setImmediate(r)); // the close events follow the failed callbacks
    return s.closed || CONNECTION_LOST.test(describeError(err));
  }

  private drop(s: SftpSession): void {
    s.closed = true;
    clearTimeout(s.watchdog);
    s.watchdog = undefined;
    if (this.live === s) this.live = undefined;
    s.sock.destroy();
  }

  private session(): Promise<SftpSession> {
    if (this.live && !this.live.closed) return Promise.resolve(this.live);
    this.opening ??= openSftpSession(this.o, this.where, (s) => {
      if (this.live === s) this.live = undefined;
    })
      .then((s) => {
        this.live = s;
        return s;
      })
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }
}
