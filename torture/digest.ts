/**
 * What "the same database" means here: the same user-visible content. A digest over the schema (every
 * table, index, trigger and view, by its SQL) and every row of every user table in key order, with
 * type-tagged values (a blob is hashed as bytes, never turned into text). Litestream's own tables and
 * SQLite's internal ones are left out: the replicators add `_litestream_*` tables to the database.
 *
 * Streams rows (one row in memory at a time), so it works on databases bigger than memory.
 */
import { createHash, type Hash } from 'node:crypto';
import type Database from 'better-sqlite3';
import { INCONSISTENT_COUNTS_SQL, LEDGER_TABLES } from './schema.js';

const USER_OBJECTS = "name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_litestream\\_%' ESCAPE '\\'";

export interface DbFacts {
  digest: string;
  /** `table:id` of every row of the ledger tables, ascending. */
  keys: string[];
  /** 'ok', or SQLite's first complaints. */
  integrity: string;
  /** Writers whose trigger-maintained count disagrees with their rows (must be none). */
  inconsistent: string[];
}

function hashValue(h: Hash, v: unknown): void {
  if (v === null || v === undefined) h.update('n;');
  else if (Buffer.isBuffer(v)) {
    h.update(`b${v.length}:`);
    h.update(v);
  } else if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    h.update(`s${b.length}:`);
    h.update(b);
  } else h.update(`${typeof v === 'bigint' ? 'i' : 'r'}${String(v)};`); // eslint-disable-line @typescript-eslint/no-base-to-string -- a number or bigint: SQLite's other types are above
}

export function contentDigest(db: Database.Database): string {
  const h = createHash('sha256');
  const objects = db.prepare(`SELECT type, name, tbl_name, sql FROM sqlite_master WHERE ${USER_OBJECTS} ORDER BY type, name`).all() as {
    type: string;
    name: string;
    tbl_name: string;
    sql: string | null;
  }[];
  for (const o of objects) {
    h.update(`${o.type}\n${o.name}\n${o.tbl_name}\n${o.sql ?? ''}\n`);
    if (o.type !== 'table') continue;
    const pk = (db.prepare(`SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk`).all(o.name) as { name: string }[]).map(
      (c) => `"${c.name}"`,
    );
    const withoutRowid = /\bWITHOUT\s+ROWID\b/i.test(o.sql ?? '');
    const order = withoutRowid ? pk.join(', ') : 'rowid';
    for (const row of db.prepare(`SELECT * FROM "${o.name}" ORDER BY ${order}`).raw().iterate() as IterableIterator<unknown[]>) {
      h.update('(');
      for (const v of row) hashValue(h, v);
      h.update(')\n');
    }
  }
  return h.digest('hex');
}

export function dbFacts(db: Database.Database, withIntegrity: boolean): DbFacts {
  const keys: string[] = [];
  const tables = new Set(
    (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name),
  );
  for (const t of LEDGER_TABLES) {
    if (!tables.has(t)) continue;
    for (const id of db.prepare(`SELECT id FROM "${t}" ORDER BY id`).pluck().iterate() as IterableIterator<number>) keys.push(`${t}:${id}`);
  }
  const integrity = withIntegrity ? (db.prepare('PRAGMA integrity_check(5)').pluck().all() as string[]).join('; ') : 'unchecked';
  const inconsistent = tables.has('writer_counts') ? (db.prepare(INCONSISTENT_COUNTS_SQL).pluck().all() as string[]) : [];
  return { digest: contentDigest(db), keys, integrity, inconsistent };
}
