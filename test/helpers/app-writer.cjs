// A short-lived application process for the tests: opens the database with better-sqlite3, inserts rows
// with the given ids into t in one transaction, and exits (closing its connection, as a real app does).
// Usage: node app-writer.cjs DB_PATH FIRST_ID COUNT [PAYLOAD_BYTES]
const Database = require('better-sqlite3');
const [dbPath, first, count, bytes] = process.argv.slice(2);
const db = new Database(dbPath, { timeout: 10000 });
db.pragma('journal_mode = WAL');
const insert = db.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)');
db.transaction(() => {
  for (let i = 0; i < Number(count); i++) insert.run(Number(first) + i, 'x'.repeat(Number(bytes ?? 100)), Number(first));
})();
db.close();
