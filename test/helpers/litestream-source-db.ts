/**
 * The application side of oracle tests: a WAL-mode SQLite source database written with better-sqlite3,
 * and a canonical digest of its *user* content, so a source and a restored copy can be compared while
 * ignoring what Litestream adds (`_litestream_seq`, `_litestream_lock`) and SQLite internals (`sqlite_%`).
 *
 * Self-contained on purpose (no imports from src/): the oracle must not depend on the code under test.
 */
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';

export type SqliteDb = Database.Database;

export const USER_TABLE_SQL = 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)';

/**
 * Opens (creating if needed) a source database in WAL mode with a busy timeout and the user table `t`.
 *
 * better-sqlite3 trap: when the LAST connection to a WAL database closes, SQLite checkpoints and deletes
 * the `-wal` file. While Litestream runs it holds a connection, so closing ours is harmless; closing ours
 * after Litestream has stopped deletes the WAL, and Litestream starts a NEW generation at its next start.
 */
export function openSourceDb(path: string, opts: { busyTimeoutMs?: number } = {}): SqliteDb {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 5000}`);
  db.exec(USER_TABLE_SQL);
  return db;
}

function isUserObject(name: string): boolean {
  return !name.startsWith('sqlite_') && !name.startsWith('_litestream_');
}

/** Opens a database for reading only, without creating or deleting its -wal/-shm as a side effect. */
function openForDigest(path: string): SqliteDb {
  return new Database(path, { readonly: true, fileMustExist: true });
}

/**
 * Canonical sha256 digest of the user content: for every schema object (table, index, view, trigger)
 * whose name starts neither with `sqlite_` nor `_litestream_`, its type, name and SQL; and for every such
 * table its rows in rowid order (primary-key order for WITHOUT ROWID tables), values JSON-encoded with
 * their SQLite storage class. Two databases with equal digests hold the same user data.
 */
export function userTableContent(dbOrPath: string | SqliteDb): string {
  const db = typeof dbOrPath === 'string' ? openForDigest(dbOrPath) : dbOrPath;
  try {
    const h = createHash('sha256');
    const objects = (
      db.prepare("SELECT type, name, tbl_name AS tbl, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name").all() as {
        type: string;
        name: string;
        tbl: string;
        sql: string;
      }[]
    ).filter((o) => isUserObject(o.name) && isUserObject(o.tbl));
    for (const o of objects) {
      h.update(`${o.type}\u0000${o.name}\u0000${o.sql}\u0000`);
      if (o.type !== 'table' || /^CREATE\s+VIRTUAL/i.test(o.sql)) continue;
      const cols = (db.prepare(`SELECT name FROM pragma_table_info(?)`).all(o.name) as { name: string }[]).map((c) => c.name);
      const order = /WITHOUT\s+ROWID/i.test(o.sql) ? cols.map((_, i) => i + 1).join(', ') : 'rowid';
      const select = cols.map((c) => `typeof("${c}"), "${c}"`).join(', ');
      const stmt = db.prepare(`SELECT ${select} FROM "${o.name}" ORDER BY ${order}`).raw(true);
      for (const row of stmt.iterate() as Iterable<unknown[]>) {
        h.update(`${JSON.stringify(row.map((v) => (Buffer.isBuffer(v) ? `x'${v.toString('hex')}'` : v)))}\n`);
      }
      h.update('\u0001');
    }
    return h.digest('hex');
  } finally {
    if (typeof dbOrPath === 'string') db.close();
  }
}

/** Number of rows of `table` (0 if the table does not exist). */
export function rowCount(dbOrPath: string | SqliteDb, table = 't'): number {
  const db = typeof dbOrPath === 'string' ? openForDigest(dbOrPath) : dbOrPath;
  try {
    const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table);
    if (!exists) return 0;
    return (db.prepare(`SELECT count(*) AS n FROM "${table}"`).get() as { n: number }).n;
  } finally {
    if (typeof dbOrPath === 'string') db.close();
  }
}

/** `PRAGMA integrity_check` result ('ok' when healthy). */
export function integrityCheck(path: string): string {
  const db = openForDigest(path);
  try {
    return (db.prepare('PRAGMA integrity_check').pluck().all() as string[]).join('\n');
  } finally {
    db.close();
  }
}

/** Deterministic pseudo-random text of exactly `size` characters (compressible like real data). */
export function textOf(seed: number, size: number): string {
  let s = '';
  let x = seed >>> 0 || 1;
  while (s.length < size) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    s += `${x.toString(36)}-${seed} `;
  }
  return s.slice(0, size);
}
