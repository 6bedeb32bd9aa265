/**
 * The application's schema: more page kinds than one table (a secondary index, an upsert trigger that
 * keeps a WITHOUT ROWID table of counts, a view, overflow pages from big blobs), and the tables whose
 * ids the ledger tracks. Written in SQL every writer (better-sqlite3, python's sqlite3, the sqlite3 CLI)
 * understands.
 */

/** Tables whose every row is recorded in the ledger (key `table:id`). */
export const LEDGER_TABLES = ['items', 'big'] as const;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, writer TEXT NOT NULL, k INTEGER NOT NULL, body TEXT, at REAL);
CREATE INDEX IF NOT EXISTS items_writer_k ON items (writer, k);
CREATE TABLE IF NOT EXISTS writer_counts (writer TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS items_ins AFTER INSERT ON items BEGIN
  INSERT INTO writer_counts (writer, n) VALUES (NEW.writer, 1) ON CONFLICT (writer) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS items_del AFTER DELETE ON items BEGIN
  UPDATE writer_counts SET n = n - 1 WHERE writer = OLD.writer;
END;
CREATE TABLE IF NOT EXISTS big (id INTEGER PRIMARY KEY, part INTEGER NOT NULL, data BLOB NOT NULL);
CREATE VIEW IF NOT EXISTS writer_totals AS
  SELECT w.writer, w.n, (SELECT count(*) FROM items i WHERE i.writer = w.writer) AS actual FROM writer_counts w;
`;

/** A query that returns no row when the trigger-maintained counts agree with the rows (any restore must). */
export const INCONSISTENT_COUNTS_SQL = 'SELECT writer FROM writer_totals WHERE n != actual LIMIT 5';

/** Deletes a couple of random committed rows, returning their ids (for the ledger). */
export const DELETE_RANDOM_ITEMS_SQL = 'DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 2) RETURNING id';
