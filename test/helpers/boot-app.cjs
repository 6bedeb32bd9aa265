// An application that boots on a volume that may be new, as the seed's server does: opens (or creates)
// its database, records how many rows it found from earlier boots, adds rows of its own and exits.
// Usage: node boot-app.cjs DB_PATH BOOT_NUMBER SEEN_FILE [ROWS]
const { writeFileSync } = require('node:fs');
const Database = require('better-sqlite3');
const [dbPath, boot, seenFile, rows] = process.argv.slice(2);
const db = new Database(dbPath, { timeout: 10000 });
db.pragma('journal_mode = WAL');
db.exec('CREATE TABLE IF NOT EXISTS boots (id INTEGER PRIMARY KEY, boot INTEGER NOT NULL, v TEXT)');
const seen = db.prepare('SELECT boot, COUNT(*) AS n FROM boots GROUP BY boot ORDER BY boot').all();
writeFileSync(seenFile, JSON.stringify(seen));
const insert = db.prepare('INSERT INTO boots (boot, v) VALUES (?, ?)');
// Several transactions, as a server's requests would make.
for (let i = 0; i < Number(rows ?? 20); i++) insert.run(Number(boot), 'x'.repeat(200));
db.close();
