/**
 * Building the restored database file: applying WAL files to it, and SQLite's integrity check.
 */
import { closeSync, ftruncateSync, openSync, readSync, writeSync, writevSync } from 'node:fs';
import Database from 'better-sqlite3';
import { ReplicateError } from '../errors.js';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, type WalScanResult } from './wal-format.js';

export interface WalFileToApply {
  path: string;
  scan: WalScanResult;
}

/**
 * Applies the committed frames of validated WAL files (in index order) to a database file, with the
 * result SQLite's checkpoints would give one after the other: for every page, its newest committed
 * version; pages beyond a commit's database size dropped; the file cut to the last commit's size. Each
 * `scan` comes from WalScanner over the same bytes, so salts, checksums and commit boundaries were
 * checked as SQLite's recovery checks them.
 *
 * All indexes at once and directly, rather than one SQLite checkpoint per index: a page rewritten in
 * many indexes is written once, the WAL files are read sequentially, and nothing re-checksums them.
 */
export function applyWalFiles(dbPath: string, files: readonly WalFileToApply[], pageSize: number): void {
  // pgno -> [file number, frame offset] of the winning version.
  const winner = new Map<number, [number, number]>();
  let size = -1; // pages after the last commit so far (-1: no commit yet, keep the snapshot's size)
  let minSize = Infinity; // smallest size after a commit: what a sequential apply would have cut to
  files.forEach((f, fileNo) => {
    if (f.scan.commitDbSize === 0) return; // no committed transaction in this index
    for (const [pgno, offset] of f.scan.committedPages) winner.set(pgno, [fileNo, offset]);
    size = f.scan.commitDbSize;
    minSize = Math.min(minSize, size);
    // A shrink discards every page past the new end, whoever wrote it.
    for (const pgno of winner.keys()) if (pgno > size) winner.delete(pgno);
  });
  if (size < 0) return;

  const db = openSync(dbPath, 'r+');
  try {
    // As if cut at the smallest size on the way: pages regrown later but never rewritten read as zeros.
    ftruncateSync(db, minSize * pageSize);
    const frame = WAL_FRAME_HEADER_SIZE + pageSize;
    const READ = 256 * frame;
    const buf = Buffer.allocUnsafe(READ);
    files.forEach((f, fileNo) => {
      if (f.scan.commitDbSize === 0) return;
      const wal = openSync(f.path, 'r');
      try {
        // Read the committed part sequentially; write each winning page, consecutive pages in one call.
        for (let start = WAL_HEADER_SIZE; start < f.scan.committedSize; start += READ) {
          const length = Math.min(READ, f.scan.committedSize - start);
          readFully(wal, buf, length, start, f.path);
          let run: Buffer[] = [];
          let runFirst = 0;
          const flush = () => {
            if (run.length > 0) writeFully(db, run, (runFirst - 1) * pageSize);
            run = [];
          };
          for (let at = 0; at < length; at += frame) {
            const pgno = buf.readUInt32BE(at);
            const w = winner.get(pgno);
            if (!w || w[0] !== fileNo || w[1] !== start + at) {
              flush();
              continue;
            }
            if (run.length > 0 && pgno !== runFirst + run.length) flush();
            if (run.length === 0) runFirst = pgno;
            run.push(buf.subarray(at + WAL_FRAME_HEADER_SIZE, at + frame));
          }
          flush();
        }
      } finally {
        closeSync(wal);
      }
    });
    ftruncateSync(db, size * pageSize);
  } finally {
    closeSync(db);
  }
}

function readFully(fd: number, buf: Buffer, length: number, position: number, path: string): void {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new ReplicateError('IO', `reading ${path} at offset ${position + done}: unexpected end of file`);
    done += n;
  }
}

function writeFully(fd: number, pages: Buffer[], position: number): void {
  const total = pages.reduce((n, p) => n + p.length, 0);
  let done = writevSync(fd, pages, position);
  if (done === total) return;
  const all = Buffer.concat(pages); // a short write is rare: finish it simply
  while (done < total) done += writeSync(fd, all, done, total - done, position + done);
}

export type IntegrityMode = 'quick' | 'full';

/** Runs `PRAGMA quick_check` or `integrity_check`; throws INTEGRITY_CHECK_FAILED with SQLite's findings. */
export function checkIntegrity(path: string, mode: IntegrityMode): void {
  const pragma = mode === 'quick' ? 'quick_check' : 'integrity_check';
  const db = new Database(path, { fileMustExist: true, readonly: true });
  try {
    const rows = db.pragma(pragma) as Record<string, string>[];
    const messages = rows.map((r) => String(Object.values(r)[0]));
    if (messages.length !== 1 || messages[0] !== 'ok') {
      throw new ReplicateError('INTEGRITY_CHECK_FAILED', `restored database failed ${pragma}: ${messages.slice(0, 5).join('; ')}`, {
        details: { messages: messages.slice(0, 20) },
      });
    }
  } finally {
    db.close();
  }
}
