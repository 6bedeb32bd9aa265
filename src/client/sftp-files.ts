/**
 * Remote file operations of the sftp backend over one connection (sftp-connection.ts), shared by the
 * client and its lease store: exclusive creates, directory creation, pipelined writes and reads, and
 * the atomic replace.
 */
import { posix } from 'node:path';
import type { SFTPWrapper, Stats } from 'ssh2';
import { abortError } from '../errors.js';
import type { ObjectBody, OpOptions } from './replica-client.js';
import { SFTP_STATUS, sftpStatus, type SftpConnection } from './sftp-connection.js';

/** Upload and download pipelining: requests of CHUNK bytes, up to IN_FLIGHT at a time (1 MiB). */
export const CHUNK = 64 * 1024;
export const IN_FLIGHT = 16;
/** How long an fsync of an uploaded file may go without an answer (the request timeout for the rest). */
const FSYNC_TIMEOUT_MS = 10 * 60_000;
/** Replicas hold the database's content: readable by the login user only. */
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/** File operations over one connection, shared by the client and its lease store. */
export class RemoteFiles {
  constructor(
    private readonly conn: SftpConnection,
    /** `sftp://user@host:port/` (or `…/~/`), prefixed to paths in messages. */
    readonly base: string,
  ) {}

  call<T>(
    doing: string,
    fn: (sftp: SFTPWrapper, cb: (err: Error | null | undefined, value?: T) => void) => void,
    opts?: OpOptions,
    retry = false,
    slowMs?: number,
  ): Promise<T> {
    return this.conn.request(doing, fn, { signal: opts?.signal, retry, ...(slowMs !== undefined ? { slowMs } : {}) });
  }

  supports(ext: string): Promise<boolean> {
    return this.conn.supports(ext);
  }

  /** Creates `path` (which must not exist), making its parent directories first when they are missing. */
  async createExclusive(path: string, opts?: OpOptions): Promise<Buffer> {
    // Sent again on a fresh connection when the one it went out on was dead (the first request after a
    // long idle time); if it had arrived after all, the second try finds the name taken and fails.
    const open = () =>
      this.call<Buffer>(`creating ${this.base}${path}`, (s, cb) => s.open(path, 'wx', { mode: FILE_MODE }, cb), opts, true);
    try {
      return await open();
    } catch (err) {
      if (sftpStatus(err) !== SFTP_STATUS.NO_SUCH_FILE) throw err;
    }
    await this.mkdirAll(posix.dirname(path), opts);
    return open();
  }

  /** Litestream's MkdirAll: each missing directory from the top, one that exists already is fine. */
  async mkdirAll(dir: string, opts?: OpOptions): Promise<void> {
    const parts: string[] = [];
    for (let d = dir; d !== '.' && d !== '/' && d !== ''; d = posix.dirname(d)) parts.unshift(d);
    for (const d of parts) {
      try {
        await this.call(`creating directory ${this.base}${d}`, (s, cb) => s.mkdir(d, { mode: DIR_MODE }, cb), opts, true);
      } catch (err) {
        if (sftpStatus(err) === undefined) throw err;
        // Exists (OpenSSH answers a generic failure), or a real failure: stat says which.
        const st = await this.call<Stats>(`checking directory ${this.base}${d}`, (s, cb) => s.stat(d, cb), opts, true).catch(
          () => undefined,
        );
        if (!st?.isDirectory()) throw err;
      }
    }
  }

  /**
   * Writes the body at increasing offsets, up to IN_FLIGHT requests at a time; returns the byte count.
   * `path` is for messages.
   */
  async writeAll(handle: Buffer, path: string, body: ObjectBody, opts?: OpOptions): Promise<number> {
    const pending = new Set<Promise<void>>();
    let failure: { err: unknown } | undefined; // the first write that failed (boxed: any value counts)
    let offset = 0;
    const send = (buf: Buffer, at: number) => {
      // No signal per request (sixteen listeners on one signal): it is checked before each one instead.
      const p = this.call<void>(`writing ${this.base}${path}`, (s, cb) => s.write(handle, buf, 0, buf.length, at, cb)).then(
        () => void pending.delete(p),
        (err: unknown) => {
          pending.delete(p);
          failure ??= { err };
        },
      );
      pending.add(p);
    };
    try {
      for await (const chunk of body) {
        const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        for (let i = 0; i < buf.length; i += CHUNK) {
          // ssh2 copies the bytes into its packet when the request is sent, so `buf` may be reused after.
          while (pending.size >= IN_FLIGHT) await Promise.race(pending);
          if (failure !== undefined) throw failure.err;
          if (opts?.signal?.aborted) throw abortError(opts.signal);
          const part = buf.subarray(i, Math.min(buf.length, i + CHUNK));
          send(part, offset);
          offset += part.length;
        }
      }
      await Promise.all(pending);
      if (failure !== undefined) throw failure.err;
      return offset;
    } finally {
      await Promise.all(pending);
    }
  }

  /** fsync@openssh.com where the server offers it: the bytes are on the server's disk before the rename. */
  async sync(handle: Buffer, path: string, opts?: OpOptions): Promise<void> {
    if (!(await this.supports('fsync@openssh.com'))) return;
    // Flushing a large file to a slow disk can take minutes, with nothing else to answer meanwhile.
    await this.call(`syncing ${this.base}${path}`, (s, cb) => s.ext_openssh_fsync(handle, cb), opts, false, FSYNC_TIMEOUT_MS);
  }

  /**
   * Renames `from` over `to`, replacing it atomically with posix-rename@openssh.com. A server without
   * it gets a plain rename, which must not replace (SFTP v3), so an existing `to` is removed first: for
   * a moment there is no object (never half of one).
   */
  async replace(from: string, to: string, opts?: OpOptions): Promise<void> {
    if (await this.supports('posix-rename@openssh.com')) {
      await this.call(`renaming ${this.base}${from}`, (s, cb) => s.ext_openssh_rename(from, to, cb), opts);
      return;
    }
    try {
      await this.call(`renaming ${this.base}${from}`, (s, cb) => s.rename(from, to, cb), opts);
    } catch (err) {
      if (sftpStatus(err) !== SFTP_STATUS.FAILURE) throw err;
      await this.call(`replacing ${this.base}${to}`, (s, cb) => s.unlink(to, cb), opts);
      await this.call(`renaming ${this.base}${from}`, (s, cb) => s.rename(from, to, cb), opts);
    }
  }

  /** A small file's whole content (lease records). */
  async readSmall(path: string, opts?: OpOptions): Promise<Buffer> {
    const handle = await this.call<Buffer>(`opening ${this.base}${path}`, (s, cb) => s.open(path, 'r', cb), opts, true);
    const parts: Buffer[] = [];
    for await (const c of this.readAll(handle, path, opts, (e) => e as Error)) parts.push(c);
    return Buffer.concat(parts);
  }

  /**
   * The file's bytes in order, reading ahead: two reads of CHUNK bytes at first, twice as many after
   * each full chunk, up to IN_FLIGHT (so a small WAL segment costs two reads, a large snapshot streams
   * at IN_FLIGHT × CHUNK per round trip). Closes the handle at the end, on failure, and when the
   * consumer stops early.
   */
  async *readAll(handle: Buffer, path: string, opts: OpOptions | undefined, wrap: (err: unknown) => Error): AsyncGenerator<Buffer> {
    // The signal is checked before each read rather than listened to by each of the reads in flight.
    const read = (at: number, len: number) => {
      if (opts?.signal?.aborted) return Promise.reject(abortError(opts.signal));
      return this.call<Buffer>(`reading ${this.base}${path}`, (s, cb) => {
        const buf = Buffer.allocUnsafe(len);
        s.read(handle, buf, 0, len, at, (err, n) => cb(err, buf.subarray(0, n)));
      });
    };
    const ahead: { at: number; data: Promise<Buffer> }[] = [];
    let next = 0;
    let window = 2;
    const fill = () => {
      while (ahead.length < window) {
        const p = read(next, CHUNK);
        p.catch(() => undefined); // observed when its turn comes
        ahead.push({ at: next, data: p });
        next += CHUNK;
      }
    };
    try {
      fill();
      for (;;) {
        const { at, data } = ahead.shift()!;
        let buf = await data;
        if (buf.length === 0) return; // end of file
        if (buf.length < CHUNK) {
          // Short: the end of the file if the next range is empty; else the server answered less than
          // asked mid-file, and the rest of this range comes before anything after it.
          if (ahead.length === 0) fill();
          if ((await ahead[0]!.data).length === 0) {
            yield buf;
            return;
          }
          while (buf.length < CHUNK) {
            const more = await read(at + buf.length, CHUNK - buf.length);
            if (more.length === 0) break;
            buf = Buffer.concat([buf, more]);
          }
        }
        yield buf;
        window = Math.min(IN_FLIGHT, window * 2);
        fill();
      }
    } catch (err) {
      throw wrap(err);
    } finally {
      await Promise.allSettled(ahead.map((a) => a.data));
      await this.call('closing', (s, cb) => s.close(handle, cb)).catch(() => undefined);
    }
  }
}
