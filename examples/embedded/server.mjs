// A Node server that embeds stn-replicate and reuses the deployment's litestream.yml (docs/deploy.md):
// restore the database when it is missing, replicate it from a worker thread while serving, and upload
// the last changes on SIGTERM. Run: LITESTREAM_CONFIG=litestream.yml PORT=8585 node server.mjs
//
//   POST /notes   adds a note          GET /notes    how many there are
//   GET /healthz  200 while every replica is within HEALTH_MAX_LAG_SECONDS (default 60) of the database, 503 otherwise
import { createServer } from 'node:http';
import { homedir } from 'node:os';
import Database from 'better-sqlite3';
import { describeError, evaluateHealth, loadConfig, replicationOptionsFromConfig, restoreIfMissing, startReplication } from 'stn-replicate';

// The library never reads the environment or prints: the application hands it both.
const log = {
  debug() {},
  info: (msg, fields) => console.log(JSON.stringify({ level: 'info', msg, ...fields })),
  warn: (msg, fields) => console.error(JSON.stringify({ level: 'warn', msg, ...fields })),
  error: (msg, fields) => console.error(JSON.stringify({ level: 'error', msg, ...fields })),
};

const config = await loadConfig({ path: process.env.LITESTREAM_CONFIG, env: process.env, cwd: process.cwd(), homeDir: homedir() });
const dbConfig = config.dbs[0];
const options = replicationOptionsFromConfig(dbConfig, process.env);

// 1. Missing database: restore it. No backup at all: a first boot. Anything else: do not start.
try {
  await restoreIfMissing(dbConfig.path, options.replicas, {
    metaPath: dbConfig.metaPath,
    restoreMarker: dbConfig.continueAfterRestore === true,
    logger: log,
  });
} catch (err) {
  log.error('cannot restore the database; not starting', { error: describeError(err) });
  process.exit(1);
}

// 2. The application's own connection, as it always was.
const db = new Database(dbConfig.path);
db.pragma('journal_mode = WAL');
db.pragma('busy_timeout = 5000');
db.exec('CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, at TEXT NOT NULL)');

// 3. Replication, in a worker thread so that its SQLite work never blocks this event loop.
const replication = await startReplication({ ...options, logger: log });

const maxLagMs = Number(process.env.HEALTH_MAX_LAG_SECONDS ?? 60) * 1000;
const server = createServer(async (req, res) => {
  const reply = (status, body) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  try {
    if (req.method === 'POST' && req.url === '/notes') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const { lastInsertRowid } = db.prepare('INSERT INTO notes (body, at) VALUES (?, ?)').run(body, new Date().toISOString());
      return reply(201, { id: Number(lastInsertRowid) });
    }
    if (req.method === 'GET' && req.url === '/notes') return reply(200, db.prepare('SELECT COUNT(*) AS count FROM notes').get());
    if (req.method === 'GET' && req.url === '/healthz') {
      // The same verdict as `replicate`'s /healthz, from the replication's own figures.
      const health = evaluateHealth([await replication.status()], maxLagMs);
      return reply(health.healthy ? 200 : 503, health);
    }
    reply(404, { error: 'not found' });
  } catch (err) {
    log.error('request failed', { url: req.url, error: describeError(err) });
    if (!res.headersSent) reply(500, { error: 'internal error' });
  }
});
server.listen(Number(process.env.PORT ?? 8585), () => log.info('listening', { port: server.address().port }));

// 4. SIGTERM (or Ctrl-C): stop taking requests and finish those in flight, close the app's connection,
//    then the final sync uploads what is left. The exit code says whether it did.
let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log.info('shutting down', { signal });
  const closed = new Promise((resolve) => server.close(resolve));
  server.closeIdleConnections();
  await closed;
  db.close();
  try {
    await replication.close();
    process.exit(0);
  } catch (err) {
    log.error('final sync failed; the last changes are only in the local database', { error: describeError(err) });
    process.exit(1);
  }
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
