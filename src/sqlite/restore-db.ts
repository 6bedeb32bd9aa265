/**
 * SQLite's integrity check of a restored database file (the WAL is applied by wal-apply.ts).
 */
import Database from 'better-sqlite3';
import { ReplicateError } from '../errors.js';

export type IntegrityMode = 'quick' | 'full';

/** Runs `PRAGMA quick_check` or `integrity_check`; throws INTEGRITY_CHECK_FAILED with SQLite's findings. */
export function checkIntegrity(path: string, mode: IntegrityMode): void {
  const pragma = mode === 'quick' ? 'quick_check' : 'integrity_check';
  const db = new Database(path, { fileMustExist: true, readonly: true });
  try {
    // SQLite's own default page cache (2 MB), not better-sqlite3's 16 MB: the check reads every page
    // once, as fast with the small cache, and the big one only added its size to the restore's memory.
    db.pragma('cache_size = -2000');
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
