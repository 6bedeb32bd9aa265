/**
 * The `sftp` backend: a replica in a directory on an SSH server, laid out exactly as Litestream's (the
 * same tree as the file backend: generations/<gen>/snapshots, generations/<gen>/wal). createdAt is the
 * remote file's mtime (whole seconds: SFTP v3), as Litestream lists it.
 *
 * Unlike Litestream v0.3.13, which writes objects in place (a crash leaves a truncated object that
 * breaks its position recovery and restores; docs/compatibility.md, sftp):
 * - an object is written to a temp name beside it (`<name>.<random>.tmp`, which no listing parses),
 *   fsynced where the server offers `fsync@openssh.com`, and renamed into place with
 *   `posix-rename@openssh.com` (an atomic replace), so a reader sees the whole object or none;
 * - the server's host key is verified (see ssh-host-keys.ts);
 * - files are created 0600 and directories 0700 (Litestream leaves the server's default, often 0644).
 * Connections, timeouts and reconnects: sftp-connection.ts. The lease: sftp-lease.ts.
 */
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import type { FileEntryWithStats, Stats } from 'ssh2';
import { describeError, NotFoundError, ReplicateError } from '../errors.js';
import { isGenerationName, parseSnapshotName, parseWalSegmentName, ReplicaLayout } from '../layout.js';
import type { Pos } from '../pos.js';
import {
  CLIENT_TRANSFER,
  OperationCounter,
  type ClientTransfer,
  type ObjectBody,
  type OperationCounts,
  type OpOptions,
  type ReplicaClient,
  type SnapshotInfo,
  type StoredLease,
  type WalSegmentInfo,
} from './replica-client.js';
import { SFTP_STATUS, SftpConnection, sftpStatus } from './sftp-connection.js';
import type { HostKeyPolicy } from './sftp-connect.js';
import { IN_FLIGHT, RemoteFiles } from './sftp-files.js';
import { SftpLeaseStore } from './sftp-lease.js';
import { parseHostKeyLines } from './ssh-host-keys.js';

export interface SftpReplicaClientOptions {
  /** `host` or `host:port` (`[v6addr]:port`); port 22 when none is given, as Litestream's `host`. */
  host: string;
  user: string;
  /** A secret: never logged or put in a message. */
  password?: string;
  /** A private key file (OpenSSH or PEM, unencrypted), as Litestream's `key-path`. */
  keyPath?: string;
  /** The replica root on the server; relative to the login directory unless absolute; "" is that directory. */
  path?: string;
  /** The server's public host key (`TYPE BASE64 [comment]`, one per line); trusted instead of known_hosts. */
  hostKey?: string;
  /** A known_hosts file listing the server (OpenSSH's format). */
  knownHostsPath?: string;
  /** Accept any host key (Litestream v0.3.13's behaviour): for test setups only. */
  insecureIgnoreHostKey?: boolean;
  /** TCP connection, SSH handshake, login and SFTP channel together (default 30 s). */
  connectTimeoutMs?: number;
  /**
   * A connection with requests waiting that gets no answer for this long (default 30 s) is dropped and
   * opened again; its requests fail.
   */
  requestTimeoutMs?: number;
}

/** Go's net.SplitHostPort, with Litestream's rule: no port → 22 (an IPv6 address may go without brackets then). */
export function splitSftpHost(hostPort: string): { host: string; port: number } {
  let host = hostPort;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(hostPort);
  if (bracketed) [, host = '', portText] = bracketed;
  else if (hostPort.split(':').length === 2) [host = '', portText] = hostPort.split(':');
  const port = portText === undefined ? 22 : /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (host === '' || !(port > 0 && port < 65536))
    throw new ReplicateError('CONFIG', `sftp replica host ${JSON.stringify(hostPort)} is not "host" or "host:port"`);
  return { host, port };
}

export class SftpReplicaClient implements ReplicaClient {
  readonly type = 'sftp';
  readonly location: string;
  private readonly layout: ReplicaLayout;
  private readonly counts = new OperationCounter();
  private readonly conn: SftpConnection;
  private readonly lease: SftpLeaseStore;
  private readonly base: string;
  private readonly f: RemoteFiles;

  constructor(private readonly options: SftpReplicaClientOptions) {
    const { host, port } = splitSftpHost(options.host);
    const given = [options.hostKey !== undefined, options.knownHostsPath !== undefined, options.insecureIgnoreHostKey === true].filter(
      Boolean,
    ).length;
    if (given !== 1) {
      throw new ReplicateError(
        'CONFIG',
        `sftp replica ${options.user}@${options.host}: give exactly one of host-key, known-hosts-path and insecure-ignore-host-key (got ${given})`,
      );
    }
    let hostKeys: HostKeyPolicy;
    if (options.insecureIgnoreHostKey) hostKeys = { kind: 'insecure' };
    else if (options.knownHostsPath !== undefined) hostKeys = { kind: 'known-hosts', path: options.knownHostsPath };
    else {
      try {
        hostKeys = { kind: 'keys', keys: parseHostKeyLines(options.hostKey!) };
      } catch (err) {
        throw new ReplicateError('CONFIG', `sftp replica ${options.user}@${options.host}: host-key: ${describeError(err)}`, { cause: err });
      }
    }
    this.conn = new SftpConnection({
      host,
      port,
      user: options.user,
      password: options.password,
      keyPath: options.keyPath,
      hostKeys,
      connectTimeoutMs: options.connectTimeoutMs ?? 30_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
    });
    const root = options.path ?? '';
    this.layout = new ReplicaLayout(root);
    this.base = `sftp://${this.conn.where}${root.startsWith('/') ? '' : '/~/'}`;
    this.location = `${this.base}${root}`;
    this.f = new RemoteFiles(this.conn, this.base);
    this.lease = new SftpLeaseStore(this.layout, this.f, (op) => this.counts.add(op));
  }

  /** The lease: versioned records created by an exclusive rename (see sftp-lease.ts). */
  readLease(opts?: OpOptions): Promise<StoredLease | undefined> {
    return this.lease.read(opts);
  }

  writeLease(body: Buffer, expected: string | undefined, opts?: OpOptions): Promise<string | undefined> {
    return this.lease.write(body, expected, opts);
  }

  /** Checks that the server's plain rename refuses to replace (what the lease's create rests on). */
  probeLease(opts?: OpOptions): Promise<void> {
    return this.lease.checkExclusiveRename(opts);
  }

  async generations(opts?: OpOptions): Promise<string[]> {
    const entries = await this.list(this.layout.generationsDir(), opts);
    return entries
      .filter((e) => e.attrs.isDirectory() && isGenerationName(e.filename))
      .map((e) => e.filename)
      .sort();
  }

  async *snapshots(generation: string, opts?: OpOptions): AsyncIterable<SnapshotInfo> {
    const out: SnapshotInfo[] = [];
    for (const e of await this.list(this.layout.snapshotsDir(generation), opts)) {
      const p = e.attrs.isFile() ? parseSnapshotName(e.filename) : undefined;
      if (p) out.push({ generation, index: p.index, size: e.attrs.size, createdAt: mtimeOf(e.attrs) });
    }
    yield* out.sort((a, b) => a.index - b.index);
  }

  async *walSegments(generation: string, opts?: OpOptions): AsyncIterable<WalSegmentInfo> {
    const out: WalSegmentInfo[] = [];
    for (const e of await this.list(this.layout.walDir(generation), opts)) {
      const p = e.attrs.isFile() ? parseWalSegmentName(e.filename) : undefined;
      if (p) out.push({ generation, index: p.index, offset: p.offset, size: e.attrs.size, createdAt: mtimeOf(e.attrs) });
    }
    yield* out.sort((a, b) => a.index - b.index || a.offset - b.offset);
  }

  async writeSnapshot(generation: string, index: number, body: ObjectBody, opts?: OpOptions): Promise<SnapshotInfo> {
    const size = await this.write(this.layout.snapshotPath(generation, index), body, opts);
    return { generation, index, size, createdAt: new Date() };
  }

  async writeWalSegment(pos: Pos, body: ObjectBody, opts?: OpOptions): Promise<WalSegmentInfo> {
    const size = await this.write(this.layout.walSegmentPath(pos.generation, pos.index, pos.offset), body, opts);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size, createdAt: new Date() };
  }

  snapshotReader(generation: string, index: number, opts?: OpOptions): Promise<Readable> {
    return this.openReader(this.layout.snapshotPath(generation, index), opts);
  }

  walSegmentReader(pos: Pos, opts?: OpOptions): Promise<Readable> {
    return this.openReader(this.layout.walSegmentPath(pos.generation, pos.index, pos.offset), opts);
  }

  /** Files first, then the emptied directories, deepest first (as Litestream); what is missing is skipped. */
  async deleteGeneration(generation: string, opts?: OpOptions): Promise<void> {
    const dir = this.layout.generationDir(generation);
    const files: string[] = [];
    const dirs: string[] = [];
    const walk = async (d: string, depth: number): Promise<void> => {
      const entries = await this.list(d, opts);
      dirs.push(d);
      for (const e of entries) {
        const p = posix.join(d, e.filename);
        if (e.attrs.isDirectory() && depth < 4) await walk(p, depth + 1);
        else files.push(p);
      }
    };
    await walk(dir, 0);
    await this.removeAll(files, opts);
    const f = this.f;
    for (const d of dirs.reverse()) {
      this.counts.add('DELETE');
      try {
        await f.call(`deleting directory ${this.base}${d}`, (s, cb) => s.rmdir(d, cb), opts, true);
      } catch (err) {
        if (sftpStatus(err) !== SFTP_STATUS.NO_SUCH_FILE) throw this.fail('deleting directory', d, err);
      }
    }
  }

  async deleteSnapshot(generation: string, index: number, opts?: OpOptions): Promise<void> {
    await this.removeAll([this.layout.snapshotPath(generation, index)], opts);
  }

  async deleteWalSegments(positions: readonly Pos[], opts?: OpOptions): Promise<void> {
    await this.removeAll(
      positions.map((p) => this.layout.walSegmentPath(p.generation, p.index, p.offset)),
      opts,
    );
  }

  /** For a replication worker thread (see CLIENT_TRANSFER): a copy of the options, and the counter. */
  [CLIENT_TRANSFER](): ClientTransfer {
    return { options: { ...this.options }, counter: this.counts };
  }

  /** Directory listings, uploads, opens for reading and removals (one per file or directory). */
  requestCounts(): Readonly<OperationCounts> {
    return this.counts.read();
  }

  snapshotLocation(generation: string, index: number): string {
    return `${this.base}${this.layout.snapshotPath(generation, index)}`;
  }

  walSegmentLocation(pos: Pos): string {
    return `${this.base}${this.layout.walSegmentPath(pos.generation, pos.index, pos.offset)}`;
  }

  /** Ends the SSH connection (it is also opened again on the next request). */
  close(): void {
    this.conn.close();
  }

  private fail(doing: string, path: string, err: unknown): ReplicateError {
    if (err instanceof ReplicateError) return err;
    return new ReplicateError('IO', `[sftp] ${doing} ${this.base}${path}: ${describeError(err)}`, { cause: err, details: { path } });
  }

  /** A directory's entries; a directory that does not exist lists as empty. */
  private async list(dir: string, opts?: OpOptions): Promise<FileEntryWithStats[]> {
    this.counts.add('LIST');
    try {
      return await this.f.call(`listing ${this.base}${dir}`, (s, cb) => s.readdir(dir, cb), opts, true);
    } catch (err) {
      if (sftpStatus(err) === SFTP_STATUS.NO_SUCH_FILE) return [];
      throw this.fail('listing', dir, err);
    }
  }

  private async write(path: string, body: ObjectBody, opts?: OpOptions): Promise<number> {
    this.counts.add('PUT');
    const f = this.f;
    const tmp = posix.join(posix.dirname(path), `${posix.basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
    let handle: Buffer | undefined;
    try {
      handle = await f.createExclusive(tmp, opts);
      // Messages name the object, not its temp file.
      const n = await f.writeAll(handle, path, body, opts);
      await f.sync(handle, path, opts);
      const h = handle;
      handle = undefined;
      await f.call(`closing ${this.base}${tmp}`, (s, cb) => s.close(h, cb), opts);
      await f.replace(tmp, path, opts);
      return n;
    } catch (err) {
      // Leave nothing behind: the temp file goes (best effort: the connection may be what failed).
      if (handle) await f.call('closing', (s, cb) => s.close(handle!, cb)).catch(() => undefined);
      await f.call('removing a temp file', (s, cb) => s.unlink(tmp, cb)).catch(() => undefined);
      throw this.fail('writing', path, err);
    }
  }

  private async openReader(path: string, opts?: OpOptions): Promise<Readable> {
    this.counts.add('GET');
    const f = this.f;
    let handle: Buffer;
    try {
      handle = await f.call(`opening ${this.base}${path}`, (s, cb) => s.open(path, 'r', cb), opts, true);
    } catch (err) {
      if (sftpStatus(err) === SFTP_STATUS.NO_SUCH_FILE)
        throw new NotFoundError(`[sftp] object not found: ${this.base}${path}`, { cause: err, details: { path } });
      throw this.fail('opening', path, err);
    }
    return Readable.from(
      f.readAll(handle, path, opts, (err) => this.fail('reading', path, err)),
      { objectMode: false, highWaterMark: 1 },
    );
  }

  /** Unlinks files, several requests at a time; a file that is not there is not an error. */
  private async removeAll(paths: readonly string[], opts?: OpOptions): Promise<void> {
    const f = this.f;
    for (let i = 0; i < paths.length; i += IN_FLIGHT) {
      await Promise.all(
        paths.slice(i, i + IN_FLIGHT).map(async (p) => {
          this.counts.add('DELETE');
          try {
            await f.call(`deleting ${this.base}${p}`, (s, cb) => s.unlink(p, cb), opts, true);
          } catch (err) {
            if (sftpStatus(err) !== SFTP_STATUS.NO_SUCH_FILE) throw this.fail('deleting', p, err);
          }
        }),
      );
    }
  }
}

/** SFTP v3 mtimes are whole seconds. */
function mtimeOf(attrs: Stats): Date {
  return new Date(attrs.mtime * 1000);
}
