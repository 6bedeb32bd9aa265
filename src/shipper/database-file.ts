/**
 * The live database file as the replicator reads it outside SQLite (snapshots, digests), and its `-shm`
 * (the wal-index header, at start-up): through ONE descriptor per file and process, not closed while this
 * process may hold SQLite locks on the file. The database's is opened before the shipper's SQLite
 * connections, the -shm's once they have made it.
 *
 * Why: POSIX advisory locks belong to the process, and closing *any* descriptor of a file drops every
 * lock the process holds on it — SQLite's included (SQLite's "How To Corrupt An SQLite Database File",
 * §2.2). A snapshot stream opened and closed on the database once dropped the shared lock our read
 * transaction relies on; the next application process to close its last connection then took the
 * exclusive lock, checkpointed and deleted the `-wal`, and the generation ended.
 *
 * The registry is process-wide on purpose: the locks it protects are process-wide too. A descriptor is
 * closed only when no shipper uses it any more and /proc/locks shows no lock of this process on the file
 * (an embedding application may have connections of its own); otherwise it stays open for reuse.
 */
import { closeSync, fstatSync, openSync, read, readFileSync, readSync, statSync } from 'node:fs';
import { errnoCode } from '../errors.js';

interface Entry {
  fd: number;
  refs: number;
}

const open = new Map<string, Entry>();

function keyOf(dev: number | bigint, ino: number | bigint): string {
  return `${dev}:${ino}`;
}

/**
 * Whether this process holds a POSIX lock on the inode (unknown, so true, where /proc/locks is unreadable).
 * The device is not compared: a lock of ours on another file system's file with the same inode number
 * only keeps this descriptor open longer, the safe way to be wrong (decoding /proc/locks' device numbers
 * wrongly would be the other way: a descriptor closed under SQLite's locks).
 */
function processHoldsLocks(ino: number): boolean {
  let text: string;
  try {
    text = readFileSync('/proc/locks', 'utf8');
  } catch {
    return true;
  }
  const pid = String(process.pid);
  return text.split('\n').some((line) => {
    const f = line.trim().split(/\s+/);
    // "1: POSIX  ADVISORY  READ 1234 fd:01:5678 0 EOF" (a blocked request adds "->" after the number).
    const at = f[1] === '->' ? 1 : 0;
    return f[4 + at] === pid && f[5 + at]?.split(':')[2] === String(ino);
  });
}

export class DatabaseFile {
  private released = false;

  private constructor(
    readonly path: string,
    private readonly key: string,
    private readonly fd: number,
  ) {}

  /** Opens (or shares) the descriptor of `path`. Throws ENOENT and friends as Node errors. */
  static open(path: string): DatabaseFile {
    // stat by name first: opening a second descriptor and closing it again is exactly what must not happen.
    const st = statSync(path);
    let key = keyOf(st.dev, st.ino);
    let entry = open.get(key);
    if (!entry) {
      const fd = openSync(path, 'r');
      const real = fstatSync(fd);
      key = keyOf(real.dev, real.ino);
      const existing = open.get(key);
      if (existing) {
        // Replaced between stat and open, by a file we already hold: keep both descriptors (closing this
        // one would drop the locks); the spare stays with the process.
        entry = existing;
      } else {
        entry = { fd, refs: 0 };
        open.set(key, entry);
      }
    }
    entry.refs++;
    return new DatabaseFile(path, key, entry.fd);
  }

  /** The same, or undefined when there is no such file. */
  static openIfExists(path: string): DatabaseFile | undefined {
    try {
      return DatabaseFile.open(path);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** The file's current size. */
  size(): number {
    return fstatSync(this.fd).size;
  }

  /** Fills `buf` from `position` (synchronously); returns the bytes read, fewer only at the end of the file. */
  readSync(buf: Buffer, position: number): number {
    let done = 0;
    while (done < buf.length) {
      const n = readSync(this.fd, buf, done, buf.length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /** The same, on the thread pool. */
  async read(buf: Buffer, position: number): Promise<number> {
    let done = 0;
    while (done < buf.length) {
      const n = await new Promise<number>((resolve, reject) =>
        read(this.fd, buf, done, buf.length - done, position + done, (err, bytes) => (err ? reject(err) : resolve(bytes))),
      );
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /**
   * The whole file from offset 0 to its end, in chunks of `chunkSize` (a fresh buffer each: consumers may
   * keep them). Reads until a short read, so a file that grows while it is read is read to its new end.
   */
  async *chunks(chunkSize = 1024 * 1024): AsyncGenerator<Buffer> {
    for (let at = 0; ;) {
      const buf = Buffer.allocUnsafe(chunkSize);
      const n = await this.read(buf, at);
      if (n > 0) yield n === chunkSize ? buf : buf.subarray(0, n);
      if (n < chunkSize) return;
      at += n;
    }
  }

  /**
   * Gives the descriptor back. Call after this user's SQLite connections are closed. The descriptor is
   * closed only if nobody else uses it and the process holds no lock on the file any more.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    const entry = open.get(this.key);
    if (!entry || entry.fd !== this.fd) return;
    entry.refs--;
    if (entry.refs > 0) return;
    const ino = Number(this.key.split(':')[1]);
    if (processHoldsLocks(ino)) return; // kept (refs 0) for the next user; closing would drop those locks
    open.delete(this.key);
    closeSync(this.fd);
  }
}
