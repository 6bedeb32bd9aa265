/**
 * Content digest of a database's user tables: what "restored correctly" means for the benchmark.
 *
 * Byte equality of files would be too strict (Litestream's own `_litestream_seq`/`_litestream_lock`
 * tables, and pages it touched, differ from the source), so this hashes every user table's schema and
 * rows in rowid order, with type-tagged values so that 1, '1' and x'31' cannot collide.
 */
import { createHash, type Hash } from 'node:crypto';
import Database from 'better-sqlite3';

export interface Digest {
  sha256: string;
  rows: number;
}

function hashValue(h: Hash, v: unknown): void {
  if (v === null) h.update('n|');
  else if (typeof v === 'bigint') h.update(`i${v}|`);
  else if (typeof v === 'number') h.update(`r${v}|`);
  else if (typeof v === 'string') h.update(`t${Buffer.byteLength(v)}:`).update(v);
  else if (Buffer.isBuffer(v)) h.update(`b${v.length}:`).update(v);
  else throw new Error(`unexpected SQLite value of type ${typeof v}`);
}

export function contentDigest(path: string): Digest {
  // Read-only, so measuring a restored file cannot checkpoint or otherwise alter it.
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const h = createHash('sha256');
    let rows = 0;
    // GLOB, not LIKE: '_' is a wildcard in LIKE.
    const tables = db
      .prepare(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT GLOB 'sqlite_*' AND name NOT GLOB '_litestream_*' ORDER BY name",
      )
      .all() as { name: string; sql: string }[];
    for (const t of tables) {
      h.update(`table ${t.name}\n${t.sql}\n`);
      // safeIntegers: 64-bit integers must hash exactly, not as rounded doubles.
      const stmt = db
        .prepare(`SELECT * FROM "${t.name.replace(/"/g, '""')}" ORDER BY rowid`)
        .raw(true)
        .safeIntegers(true);
      for (const row of stmt.iterate() as IterableIterator<unknown[]>) {
        for (const v of row) hashValue(h, v);
        h.update('\n');
        rows++;
      }
    }
    return { sha256: h.digest('hex'), rows };
  } finally {
    db.close();
  }
}
