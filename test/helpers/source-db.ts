/**
 * The source database side of compatibility tests: a WAL-mode SQLite database written by an "app", and a
 * content digest over its schema objects and rows (user objects only: Litestream adds
 * `_litestream_seq`/`_litestream_lock`).
 *
 * The schema is more than one table on purpose: a restore that loses or mangles pages of a secondary
 * index, a trigger's side table or the schema itself must show up in the digest (and in
 * `PRAGMA integrity_check`), not only one that loses rows of `t`.
 */
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';

/**
 * The app's schema (idempotent). `t` is what the tests write; the rest follows from it: an index on a
 * column and one on an expression, an audit table filled by triggers on insert and delete, and a view.
 * The same text is run by the `sqlite3` shell in tests whose app is a separate process.
 */
export const SOURCE_SCHEMA = `
CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER);
CREATE INDEX IF NOT EXISTS t_n ON t (n);
CREATE INDEX IF NOT EXISTS t_v_prefix ON t (substr(v, 1, 12));
CREATE TABLE IF NOT EXISTS t_audit (id INTEGER PRIMARY KEY, t_id INTEGER NOT NULL, op TEXT NOT NULL, n INTEGER);
CREATE INDEX IF NOT EXISTS t_audit_t_id ON t_audit (t_id, op);
CREATE TRIGGER IF NOT EXISTS t_after_insert AFTER INSERT ON t BEGIN
  INSERT INTO t_audit (t_id, op, n) VALUES (new.id, 'insert', new.n);
END;
CREATE TRIGGER IF NOT EXISTS t_after_delete AFTER DELETE ON t BEGIN
  INSERT INTO t_audit (t_id, op, n) VALUES (old.id, 'delete', old.n);
END;
CREATE VIEW IF NOT EXISTS t_by_n AS SELECT n, count(*) AS rows, sum(length(v)) AS bytes FROM t GROUP BY n;
`;

export function openSourceDb(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000');
  db.exec(SOURCE_SCHEMA);
  return db;
}

/**
 * sha256 over every user schema object (type, name, table and SQL of each table, index, trigger and view)
 * and every table's rows in rowid order, plus each view's rows (a view reads through the indexes).
 */
export function contentDigest(dbOrPath: string | Database.Database): string {
  const db = typeof dbOrPath === 'string' ? new Database(dbOrPath, { readonly: true }) : dbOrPath;
  try {
    const h = createHash('sha256');
    const objects = db
      .prepare(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE '_litestream_%' ORDER BY type, name",
      )
      .all() as { type: string; name: string; tbl_name: string; sql: string | null }[];
    for (const o of objects) {
      h.update(`${o.type}\n${o.name}\n${o.tbl_name}\n${o.sql}\n`);
      if (o.type === 'table') {
        for (const row of db.prepare(`SELECT * FROM "${o.name}" ORDER BY rowid`).iterate()) h.update(`${JSON.stringify(row)}\n`);
      } else if (o.type === 'view') {
        // A view has no rowid: its rows in sorted text order.
        const rows = db
          .prepare(`SELECT * FROM "${o.name}"`)
          .all()
          .map((row) => JSON.stringify(row));
        for (const row of rows.sort()) h.update(`${row}\n`);
      }
    }
    return h.digest('hex');
  } finally {
    if (typeof dbOrPath === 'string') db.close();
  }
}

/** `PRAGMA integrity_check` of a database file: [] when it says ok, else its messages. */
export function integrityErrors(path: string): string[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const rows = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check);
    return rows.length === 1 && rows[0] === 'ok' ? [] : rows;
  } finally {
    db.close();
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
