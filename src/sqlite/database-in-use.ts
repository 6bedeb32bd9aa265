/**
 * Whether another connection has a database open, asked of SQLite itself: the only party that knows,
 * since its locks are POSIX advisory locks that no other API reports reliably.
 */
import Database from 'better-sqlite3';
import { describeError, ReplicateError } from '../errors.js';

/**
 * Throws DATABASE_IN_USE when another connection holds a lock on the database at `path`.
 *
 * The check takes SQLite's EXCLUSIVE lock without waiting: a connection to a WAL database holds a shared
 * lock on the file for as long as it is open (SQLite relies on it to find the last connection), and a
 * replicator (ours or Litestream) is never without a read transaction, so either makes this fail. A
 * rollback-journal database is seen in use only during a transaction: an idle connection holds no lock.
 *
 * Like any last connection, closing this one folds a WAL left behind into the database file and removes
 * the `-wal`: the database keeps its content, in one file. A file that is not a SQLite database cannot be
 * in use as one, and passes.
 */
export function assertDatabaseNotInUse(path: string): void {
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { fileMustExist: true, timeout: 0 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || (typeof code === 'string' && code.startsWith('SQLITE_BUSY_'))) {
      throw new ReplicateError(
        'DATABASE_IN_USE',
        `database ${path} is in use: another process has it open (an application or a replicator); stop it first`,
        { cause: err, details: { path } },
      );
    }
    if (code === 'SQLITE_NOTADB') return;
    throw new ReplicateError('IO', `checking whether ${path} is in use: ${describeError(err)}`, { cause: err, details: { path } });
  } finally {
    db?.close();
  }
}
