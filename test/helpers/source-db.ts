/**
 * The source database side of compatibility tests: a WAL-mode SQLite database written by an "app", and a
 * content digest that compares user tables only (Litestream adds `_litestream_seq`/`_litestream_lock`).
 */
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';

export function openSourceDb(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000');
  db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)');
  return db;
}

/** sha256 over every user table's schema and rows (in rowid order). */
export function contentDigest(dbOrPath: string | Database.Database): string {
  const db = typeof dbOrPath === 'string' ? new Database(dbOrPath, { readonly: true }) : dbOrPath;
  try {
    const h = createHash('sha256');
    const tables = db
      .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_litestream_%' ORDER BY name")
      .all() as { name: string; sql: string }[];
    for (const t of tables) {
      h.update(`${t.name}\n${t.sql}\n`);
      for (const row of db.prepare(`SELECT * FROM "${t.name}" ORDER BY rowid`).iterate()) h.update(`${JSON.stringify(row)}\n`);
    }
    return h.digest('hex');
  } finally {
    if (typeof dbOrPath === 'string') db.close();
  }
}

export function rowCount(path: string, table = 't'): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM "${table}"`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Deterministic text of about `size` bytes, compressible like real data. */
export function textOf(seed: number, size: number): string {
  let s = '';
  let x = seed >>> 0 || 1;
  while (s.length < size) {
    x = (x * 1103515245 + 12345) >>> 0;
    s += `${x.toString(36)} row-${seed} `;
  }
  return s.slice(0, size);
}
