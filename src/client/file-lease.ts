/**
 * The lease primitives of the `file` backend: a compare-and-swap built from exclusive creates.
 *
 * The lease is a directory of records `<root>/lease/<version hex16>.json`; the highest version is the
 * lease. A write that expects version N creates record N + 1 with `link(2)` from a fully written, fsynced
 * temp file: link fails with EEXIST when the name exists, so of any number of writers expecting N exactly
 * one wins, and a reader never sees a partly written record. (A rename would silently replace a record
 * written meanwhile; `open(O_EXCL)` would show a record before its bytes are in.)
 *
 * Old records are removed, but only those more than KEPT_RECORDS versions behind the one just written: a
 * writer that was paused while it held version N (SIGSTOP, a frozen VM) may later re-create a removed
 * record N + 1; it then lists the directory and finds higher versions, so it knows it lost. That check
 * needs versions above N + 1 to be in the listing, which holds while fewer than KEPT_RECORDS renewals
 * happen during one directory listing.
 *
 * NFS: link is atomic on the server, but a retransmitted LINK whose first reply was lost answers EEXIST
 * although it succeeded; so on EEXIST the record's inode is compared with the temp file's (same inode:
 * ours). Directory listings may be cached by the client (actimeo): a stale listing can make a waiter
 * believe an old version is current, but its write of the next version then fails with EEXIST, so
 * safety holds and only the takeover is delayed. Documented in docs/lease.md.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError, errnoCode, ReplicateError } from '../errors.js';
import { fsyncDir } from '../internal/atomic-file.js';
import { parseLeaseRecordName, type ReplicaLayout } from '../layout.js';
import type { StoredLease } from './replica-client.js';

/** Records kept below the current one (see the file comment). */
export const KEPT_RECORDS = 64;

export interface FileLeaseOptions {
  dirMode?: number;
  fileMode?: number;
  /** Counts a request (LIST/PUT/GET/DELETE) in the client's counter. */
  count(op: 'LIST' | 'PUT' | 'GET' | 'DELETE'): void;
}

export class FileLeaseStore {
  constructor(
    private readonly layout: ReplicaLayout,
    private readonly opts: FileLeaseOptions,
  ) {}

  async read(): Promise<StoredLease | undefined> {
    // A record may be removed between the listing and the read (a newer one was written): list again.
    for (let attempt = 0; ; attempt++) {
      const versions = await this.versions();
      const top = versions.at(-1);
      if (top === undefined) return undefined;
      this.opts.count('GET');
      try {
        const body = await readFile(this.layout.leaseRecordPath(top));
        return { body, version: String(top) };
      } catch (err) {
        if (errnoCode(err) === 'ENOENT' && attempt < 10) continue;
        throw this.ioError('reading the lease', this.layout.leaseRecordPath(top), err);
      }
    }
  }

  async write(body: Buffer, expected: string | undefined): Promise<string | undefined> {
    const dir = this.layout.leaseDir();
    let next: number;
    if (expected === undefined) {
      // "Only if there is none": version 1, which exists (or existed) once anyone wrote a lease.
      if ((await this.versions()).length > 0) return undefined;
      next = 1;
    } else {
      const n = Number(expected);
      if (!Number.isSafeInteger(n) || n < 1)
        throw new ReplicateError('INVALID_ARGUMENT', `[file] lease version is not a file record version: ${JSON.stringify(expected)}`);
      next = n + 1;
    }
    const target = this.layout.leaseRecordPath(next);
    this.opts.count('PUT');
    try {
      await mkdir(dir, { recursive: true, mode: this.opts.dirMode ?? 0o700 });
      const tmp = join(dir, `.${randomBytes(8).toString('hex')}.tmp`);
      const handle = await open(tmp, 'wx', this.opts.fileMode ?? 0o600);
      try {
        await handle.writeFile(body);
        await handle.sync();
      } finally {
        await handle.close();
      }
      let won: boolean;
      try {
        await link(tmp, target);
        won = true;
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
        won = await sameFile(tmp, target); // an NFS retransmission of our own link
      } finally {
        await unlink(tmp).catch(() => undefined);
      }
      if (!won) return undefined;
      await fsyncDir(dir);
    } catch (err) {
      throw this.ioError('writing the lease', target, err);
    }
    // A stale writer may have re-created a removed record (see the file comment): ours only if highest.
    const versions = await this.versions();
    if (versions.some((v) => v > next)) return undefined;
    await this.removeBelow(versions, next - KEPT_RECORDS);
    return String(next);
  }

  private async versions(): Promise<number[]> {
    this.opts.count('LIST');
    const dir = this.layout.leaseDir();
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw this.ioError('listing the lease', dir, err);
    }
    return names.flatMap((n) => parseLeaseRecordName(n)?.version ?? []).sort((a, b) => a - b);
  }

  private async removeBelow(versions: number[], limit: number): Promise<void> {
    for (const v of versions) {
      if (v >= limit) break;
      this.opts.count('DELETE');
      // Best effort: a record left behind costs a few bytes, and the next write tries again.
      await unlink(this.layout.leaseRecordPath(v)).catch(() => undefined);
    }
  }

  private ioError(doing: string, path: string, err: unknown): ReplicateError {
    if (err instanceof ReplicateError) return err;
    return new ReplicateError('IO', `[file] ${doing} ${path}: ${describeError(err)}`, { cause: err, details: { path } });
  }
}

async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    const [sa, sb] = await Promise.all([stat(a, { bigint: true }), stat(b, { bigint: true })]);
    return sa.ino === sb.ino && sa.dev === sb.dev;
  } catch {
    return false;
  }
}
