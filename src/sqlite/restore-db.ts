/**
 * The two places restore hands a database to SQLite itself: applying a WAL file (SQLite's own
 * checkpoint validates salts and checksums exactly as it would for a crashed database) and the final
 * integrity check.
 */
import { renameSync } from 'node:fs';
import Database from 'better-sqlite3';
import { ReplicateError } from '../errors.js';

/**
 * Moves `walFile` beside `dbPath` as its `-wal` and checkpoints it in. `committedFrames` is what our own
 * scan found; SQLite must agree, or the WAL is not what we think it is.
 */
export function applyWalFile(dbPath: string, walFile: string, committedFrames: number, name: string): void {
  renameSync(walFile, `${dbPath}-wal`);
  const db = new Database(dbPath, { fileMustExist: true });
  try {
    // The finished file is fsynced once before it is moved into place; syncing every checkpoint is waste.
    db.pragma('synchronous = OFF');
    // FULL (not TRUNCATE) because it reports the frame counts; closing the last connection then deletes the WAL.
    const [row] = db.pragma('wal_checkpoint(FULL)') as { busy: number; log: number; checkpointed: number }[];
    if (!row || row.busy !== 0 || row.checkpointed !== row.log) {
      throw new ReplicateError('IO', `applying wal ${name}: checkpoint did not complete (${JSON.stringify(row)})`);
    }
    if (row.log !== committedFrames) {
      throw new ReplicateError(
        'INVALID_WAL',
        `applying wal ${name}: SQLite accepted ${row.log} frames but the WAL holds ${committedFrames} committed frames`,
      );
    }
  } finally {
    db.close();
  }
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
