/**
 * The `-wal` file as a sync reads it outside SQLite — its header and the frame header past the commit
 * point — through one descriptor kept across syncs, instead of an open, a read and a close for each.
 * An idle database is looked at every second, and those three calls per read were most of what a look
 * cost.
 *
 * Safe to keep and to close at any time: SQLite takes no POSIX lock on the `-wal` file (its locks are
 * on the database file and the `-shm`), so this descriptor can drop none (see database-file.ts for the
 * files where that matters). The descriptor follows the file the path names: the shipper stats the
 * path at every sync and drops a descriptor of any other file (`keepOnly`); the next read opens the
 * path again.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { errnoCode } from '../errors.js';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from '../sqlite/wal-format.js';

export class WalFile {
  private fd: number | undefined;
  private ino: bigint | undefined;

  constructor(readonly path: string) {}

  /** The WAL header (its first 32 bytes); undefined when the file is missing or shorter. */
  header(): Buffer | undefined {
    const b = this.read(WAL_HEADER_SIZE, 0);
    return b?.length === WAL_HEADER_SIZE ? b : undefined;
  }

  /** The salts (8 bytes) of the frame header at `offset`; undefined when the file ends before it. */
  frameSalts(offset: number): Buffer | undefined {
    const b = this.read(WAL_FRAME_HEADER_SIZE, offset);
    return b?.length === WAL_FRAME_HEADER_SIZE ? b.subarray(8, 16) : undefined;
  }

  /** Drops the descriptor unless it is of inode `ino` (the file the path names now, or undefined: none). */
  keepOnly(ino: bigint | undefined): void {
    if (this.fd !== undefined && this.ino !== ino) this.close();
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    this.ino = undefined;
    closeSync(fd);
  }

  private read(length: number, position: number): Buffer | undefined {
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.path, 'r');
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return undefined;
        throw err;
      }
      this.ino = fstatSync(this.fd, { bigint: true }).ino;
    }
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  }
}
