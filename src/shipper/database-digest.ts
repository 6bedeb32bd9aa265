/**
 * Digests of a database's page image, for validation: the live database at a pinned position (its file
 * overlaid with the WAL frames up to that position, exactly what SQLite reads in a transaction begun
 * there) and a restored copy (its file alone) hash to the same value when they hold the same pages.
 *
 * Both are hashed as pages 1..N, N being the page count in page 1's header, with zeros past the end of
 * the file: the same rule for both sides, so a file left longer or shorter than N pages by a checkpoint
 * does not count as a difference. Reads are chunked, so memory stays flat whatever the database size.
 *
 * SHA-256 rather than Litestream's CRC-64/ISO: Node has a native SHA-256 and no CRC-64, and the value
 * is only ever compared with our own other digest, never with one Litestream printed.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { ReplicateError } from '../errors.js';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, frameSize, parseWalHeader } from '../sqlite/wal-format.js';
import type { DatabaseFile } from './database-file.js';

/** Reads into `buf` at `position`; returns the bytes read (fewer only at the end of the file). */
type ReadAt = (buf: Buffer, position: number) => Promise<number>;

export interface DatabaseDigest {
  /** Hex SHA-256 of pages 1..pageCount. */
  sha256: string;
  pageSize: number;
  pageCount: number;
}

const CHUNK_PAGES = 256;

/** The digest of a database file on its own (a restored copy, or any database with no WAL). */
export async function digestDatabaseFile(path: string): Promise<DatabaseDigest> {
  const db = await open(path, 'r');
  try {
    const head = Buffer.alloc(100);
    await readAt(db, head, 0);
    const pageSize = pageSizeOf(head, path);
    return await digestPages((b, p) => readAt(db, b, p), pageSize, new Map(), undefined);
  } finally {
    await db.close();
  }
}

/**
 * The digest of the live database as of `walEnd` (see liveImage; the caller pins it there).
 */
export async function digestLiveDatabase(
  db: DatabaseFile,
  walPath: string,
  walEnd: number,
  opts: { overlay: boolean },
): Promise<DatabaseDigest> {
  const hash = createHash('sha256');
  let pageSize = 0;
  let bytes = 0;
  for await (const chunk of liveImage(db, walPath, walEnd, opts)) {
    if (pageSize === 0) pageSize = pageSizeOf(chunk, walPath);
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), pageSize, pageCount: bytes / pageSize };
}

/**
 * The live database's page image as of `walEnd` of the WAL's current cycle, in chunks (fresh buffers):
 * pages 1..N of the database file, each overlaid by its newest frame in [32, walEnd) of the WAL, N being
 * the page count in page 1's header. The database file is read through the shipper's own descriptor (see
 * database-file.ts: opening and closing another one would drop the process's SQLite locks).
 *
 * The caller must hold a read transaction begun at exactly that point for as long as this runs: then
 * SQLite cannot backfill a later frame into the database file, and every page a concurrent checkpoint
 * does write has its frame in the overlay. `overlay: false` when the WAL was fully backfilled at that
 * point (the file alone is the image, and the reader keeps it so) — then the WAL is not read at all,
 * which matters because such a reader (SQLite's read slot 0) does not keep the WAL from restarting.
 */
export async function* liveImage(db: DatabaseFile, walPath: string, walEnd: number, opts: { overlay: boolean }): AsyncGenerator<Buffer> {
  if (!opts.overlay || walEnd <= WAL_HEADER_SIZE) {
    const head = Buffer.alloc(100);
    await db.read(head, 0);
    yield* imagePages((b, p) => db.read(b, p), pageSizeOf(head, db.path), new Map(), undefined);
    return;
  }
  const wal = await open(walPath, 'r');
  try {
    const header = Buffer.alloc(WAL_HEADER_SIZE);
    await readAt(wal, header, 0);
    const { pageSize, salt1, salt2 } = parseWalHeader(header, walPath);
    // pgno -> offset of the frame holding its newest version (one entry per page the WAL changed).
    const overlay = new Map<number, number>();
    const fsize = frameSize(pageSize);
    const buf = Buffer.allocUnsafe(CHUNK_PAGES * fsize);
    for (let at = WAL_HEADER_SIZE; at < walEnd; at += buf.length) {
      const len = Math.min(buf.length, walEnd - at);
      const got = await readAt(wal, buf.subarray(0, len), at);
      if (got < len) throw new ReplicateError('IO', `${walPath} is shorter (${at + got} bytes) than the pinned position ${walEnd}`);
      for (let f = 0; f + fsize <= len; f += fsize) {
        // A frame of another cycle means the WAL restarted under us: the image would be of a state that
        // never existed, so fail (the caller retries) instead of producing it.
        if (buf.readUInt32BE(f + 8) !== salt1 || buf.readUInt32BE(f + 12) !== salt2) throw restarted(walPath);
        overlay.set(buf.readUInt32BE(f), at + f);
      }
    }
    yield* imagePages((b, p) => db.read(b, p), pageSize, overlay, wal);
    const after = Buffer.alloc(WAL_HEADER_SIZE);
    await readAt(wal, after, 0);
    if (!after.equals(header)) throw restarted(walPath);
  } finally {
    await wal.close();
  }
}

async function* imagePages(
  readDb: ReadAt,
  pageSize: number,
  overlay: Map<number, number>,
  wal: FileHandle | undefined,
): AsyncGenerator<Buffer> {
  let pageCount = Infinity; // known once page 1 (from the file or the WAL) has been read
  for (let first = 1; first <= pageCount; first += CHUNK_PAGES) {
    const count = Math.min(CHUNK_PAGES, pageCount - first + 1);
    const view = Buffer.allocUnsafe(count * pageSize);
    const got = await readDb(view, (first - 1) * pageSize);
    view.fill(0, got);
    for (let i = 0; i < count; i++) {
      const at = overlay.get(first + i);
      if (at !== undefined) await readAt(wal!, view.subarray(i * pageSize, (i + 1) * pageSize), at + WAL_FRAME_HEADER_SIZE);
    }
    if (first === 1) {
      pageCount = view.readUInt32BE(28);
      if (pageCount === 0) throw new ReplicateError('INVALID_ARGUMENT', 'database header has no page count (SQLite older than 3.7.0?)');
      yield view.subarray(0, Math.min(count, pageCount) * pageSize);
    } else {
      yield view;
    }
  }
}

async function digestPages(
  readDb: ReadAt,
  pageSize: number,
  overlay: Map<number, number>,
  wal: FileHandle | undefined,
): Promise<DatabaseDigest> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of imagePages(readDb, pageSize, overlay, wal)) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), pageSize, pageCount: bytes / pageSize };
}

function restarted(walPath: string): ReplicateError {
  return new ReplicateError('IO', `${walPath} restarted while the live database was being read; retried later`);
}

function pageSizeOf(header: Buffer, path: string): number {
  if (header.subarray(0, 16).toString('latin1') !== 'SQLite format 3\0') {
    throw new ReplicateError('CORRUPT_OBJECT', `${path} is not a SQLite database`);
  }
  const raw = header.readUInt16BE(16);
  return raw === 1 ? 65536 : raw;
}

/** Reads into `buf` at `position`; returns the bytes read (fewer only at the end of the file). */
async function readAt(h: FileHandle, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await h.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}
