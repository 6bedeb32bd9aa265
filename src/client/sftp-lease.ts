/**
 * The lease primitives of the `sftp` backend: the file backend's versioned records
 * (`<root>/lease/<version hex16>.json`, the highest version is the lease; see file-lease.ts), created
 * with the one atomic "create if absent" SFTP offers for a complete file: a plain SSH_FXP_RENAME of a
 * fully written temp file onto the record's name.
 *
 * - SFTP v3 says a rename onto an existing name fails, and OpenSSH's sftp-server makes that atomic: it
 *   renames with link(2) then unlink(2), so of any number of writers expecting version N exactly one
 *   creates N + 1, and a reader never sees a record before its bytes are in. (posix-rename@openssh.com,
 *   which the object uploads use, replaces: never here. An exclusive open (SSH_FXF_EXCL) is atomic too,
 *   but shows the record while it is still empty.)
 * - A server may implement the rename as a replacing rename(2). Before its first lease write the client
 *   checks, with two temp files renamed onto one name, that the second rename fails and leaves the first
 *   file; a server that replaces gets LEASE_UNSUPPORTED instead of a lease that is not one. (OpenSSH on a
 *   file system without hard links falls back to stat-then-rename, which this check cannot catch: see
 *   docs/lease.md.)
 * - When the connection is lost before the rename's answer arrives, the record is read back: it is ours
 *   if it holds our bytes.
 * Old records are removed as in file-lease.ts (KEPT_RECORDS below the current one).
 */
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { describeError, isReplicateError, ReplicateError } from '../errors.js';
import { parseLeaseRecordName, type ReplicaLayout } from '../layout.js';
import { KEPT_RECORDS } from './file-lease.js';
import type { OpOptions, ReplicaOperation, StoredLease } from './replica-client.js';
import { SFTP_STATUS, sftpStatus } from './sftp-connection.js';
import type { RemoteFiles } from './sftp-files.js';

export class SftpLeaseStore {
  /** The exclusive-rename check, once per client (again after it failed for another reason). */
  private checked: Promise<void> | undefined;

  constructor(
    private readonly layout: ReplicaLayout,
    private readonly files: RemoteFiles,
    private readonly count: (op: ReplicaOperation) => void,
  ) {}

  async read(opts?: OpOptions): Promise<StoredLease | undefined> {
    // A record may be removed between the listing and the read (a newer one was written): list again.
    for (let attempt = 0; ; attempt++) {
      const top = (await this.versions(opts)).at(-1);
      if (top === undefined) return undefined;
      const path = this.layout.leaseRecordPath(top);
      this.count('GET');
      try {
        return { body: await this.files.readSmall(path, opts), version: String(top) };
      } catch (err) {
        if (sftpStatus(err) === SFTP_STATUS.NO_SUCH_FILE && attempt < 10) continue;
        throw this.ioError('reading the lease', path, err);
      }
    }
  }

  async write(body: Buffer, expected: string | undefined, opts?: OpOptions): Promise<string | undefined> {
    let next: number;
    if (expected === undefined) {
      // "Only if there is none": version 1, which exists (or existed) once anyone wrote a lease.
      if ((await this.versions(opts)).length > 0) return undefined;
      next = 1;
    } else {
      const n = Number(expected);
      if (!Number.isSafeInteger(n) || n < 1)
        throw new ReplicateError('INVALID_ARGUMENT', `[sftp] lease version is not a record version: ${JSON.stringify(expected)}`);
      next = n + 1;
    }
    const target = this.layout.leaseRecordPath(next);
    let won: boolean;
    try {
      await this.checkExclusiveRename(opts);
      this.count('PUT');
      const tmp = posix.join(this.layout.leaseDir(), `.${randomBytes(8).toString('hex')}.tmp`);
      await this.writeTemp(tmp, body, opts);
      try {
        won = await this.renameExclusive(tmp, target, body, opts);
      } finally {
        await this.files.call('removing a temp file', (s, cb) => s.unlink(tmp, cb)).catch(() => undefined);
      }
    } catch (err) {
      throw this.ioError('writing the lease', target, err);
    }
    if (!won) return undefined;
    // A stale writer may have re-created a removed record (see file-lease.ts): ours only if highest.
    const versions = await this.versions(opts);
    if (versions.some((v) => v > next)) return undefined;
    await this.removeBelow(versions, next - KEPT_RECORDS);
    return String(next);
  }

  /** True: `tmp` now is `target`. False: `target` existed (someone else wrote that version). */
  private async renameExclusive(tmp: string, target: string, body: Buffer, opts?: OpOptions): Promise<boolean> {
    try {
      await this.files.call(`renaming onto ${this.files.base}${target}`, (s, cb) => s.rename(tmp, target, cb), opts);
      return true;
    } catch (err) {
      if (sftpStatus(err) === SFTP_STATUS.FAILURE) {
        // OpenSSH answers a generic failure when the name exists (link: EEXIST); anything else stays an error.
        if ((await this.contentOf(target, opts)) !== undefined) return false;
        throw err;
      }
      // The answer was lost with the connection: the rename may have happened. Ours if it holds our bytes.
      if (isReplicateError(err, 'IO')) {
        const stored = await this.contentOf(target, opts);
        if (stored === undefined) throw err;
        return stored.equals(body);
      }
      throw err;
    }
  }

  private async contentOf(path: string, opts?: OpOptions): Promise<Buffer | undefined> {
    try {
      return await this.files.readSmall(path, opts);
    } catch (err) {
      if (sftpStatus(err) === SFTP_STATUS.NO_SUCH_FILE) return undefined;
      throw err;
    }
  }

  private async writeTemp(path: string, body: Buffer, opts?: OpOptions): Promise<void> {
    const handle = await this.files.createExclusive(path, opts);
    let written = false;
    try {
      await this.files.writeAll(handle, path, [body], opts);
      await this.files.sync(handle, path, opts);
      written = true;
    } finally {
      const closed = this.files.call(`closing ${this.files.base}${path}`, (s, cb) => s.close(handle, cb));
      await (written ? closed : closed.catch(() => undefined));
    }
  }

  /**
   * Refuses a server whose plain rename replaces an existing file (see the file comment); once per
   * client. The client's probeLease, which ReplicaLease runs before its first acquisition.
   */
  checkExclusiveRename(opts?: OpOptions): Promise<void> {
    this.checked ??= this.probe(opts).catch((err: unknown) => {
      if (!isReplicateError(err, 'LEASE_UNSUPPORTED')) this.checked = undefined;
      throw err;
    });
    return this.checked;
  }

  private async probe(opts?: OpOptions): Promise<void> {
    this.count('PUT');
    const id = randomBytes(6).toString('hex');
    const dir = this.layout.leaseDir();
    const [a, b, target] = ['a.tmp', 'b.tmp', 'tmp'].map((s) => posix.join(dir, `.probe-${id}.${s}`)) as [string, string, string];
    try {
      await this.writeTemp(a, Buffer.from('a'), opts);
      await this.writeTemp(b, Buffer.from('b'), opts);
      await this.files.call(`renaming onto ${this.files.base}${target}`, (s, cb) => s.rename(a, target, cb), opts);
      const replaced = await this.files
        .call(`renaming onto ${this.files.base}${target}`, (s, cb) => s.rename(b, target, cb), opts)
        .then(
          () => true,
          (err: unknown) => {
            if (sftpStatus(err) === undefined) throw err;
            return false;
          },
        );
      if (replaced || (await this.files.readSmall(target, opts)).toString() !== 'a') {
        throw new ReplicateError(
          'LEASE_UNSUPPORTED',
          `[sftp] ${this.files.base}${dir}: the server replaces an existing file on a plain rename (SSH_FXP_RENAME), so it has no atomic create-if-absent and the replica no lease; set lease: false on it to replicate unleased`,
          { details: { path: dir } },
        );
      }
    } finally {
      for (const p of [a, b, target]) await this.files.call('removing a probe file', (s, cb) => s.unlink(p, cb)).catch(() => undefined);
    }
  }

  private async versions(opts?: OpOptions): Promise<number[]> {
    this.count('LIST');
    const dir = this.layout.leaseDir();
    try {
      const entries = await this.files.call<{ filename: string }[]>(
        `listing ${this.files.base}${dir}`,
        (s, cb) => s.readdir(dir, cb),
        opts,
        true,
      );
      return entries.flatMap((e) => parseLeaseRecordName(e.filename)?.version ?? []).sort((x, y) => x - y);
    } catch (err) {
      if (sftpStatus(err) === SFTP_STATUS.NO_SUCH_FILE) return [];
      throw this.ioError('listing the lease', dir, err);
    }
  }

  private async removeBelow(versions: number[], limit: number): Promise<void> {
    for (const v of versions) {
      if (v >= limit) break;
      this.count('DELETE');
      // Best effort: a record left behind costs a few bytes, and the next write tries again.
      const path = this.layout.leaseRecordPath(v);
      await this.files.call('removing an old lease record', (s, cb) => s.unlink(path, cb)).catch(() => undefined);
    }
  }

  private ioError(doing: string, path: string, err: unknown): ReplicateError {
    if (err instanceof ReplicateError) return err;
    return new ReplicateError('IO', `[sftp] ${doing} ${this.files.base}${path}: ${describeError(err)}`, { cause: err, details: { path } });
  }
}
