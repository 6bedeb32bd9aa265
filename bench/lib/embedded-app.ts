/**
 * The app of `bench:embedded`: one Node process that writes to its database at a steady rate on its own
 * event loop, with stn-replicate running in the same process (embedded, a file replica: `ours` in its
 * worker thread, the default; `inline` on the app's own thread) or not at all.
 * It measures what an embedding application feels: the event loop's delay (perf_hooks histogram, 1 ms
 * resolution sampling plus a 1 ms timer's lateness) and each commit's latency.
 *
 *   node dist/bench/lib/embedded-app.js <dir> <none|ours|inline> <seconds> <tx per second>
 *
 * Prints one JSON line: { delay: {p50,p99,max} ms, timerLate: {p50,p99,max} ms, commit: {p50,p99,max} ms,
 * tx, seconds, rows }.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { startReplication, type Replication } from '../../src/replication.js';

const [dir, mode, secondsArg, rateArg] = process.argv.slice(2);
if (!dir || (mode !== 'none' && mode !== 'ours' && mode !== 'inline'))
  throw new Error('usage: embedded-app <dir> <none|ours|inline> <seconds> <tx/s>');
const seconds = Number(secondsArg ?? 10);
const rate = Number(rateArg ?? 500);

const dbPath = join(dir, 'app.db');
const db = new Database(dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)');
const ins = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
const tx = db.transaction((i: number) => {
  for (let j = 0; j < 5; j++) ins.run(randomBytes(100).toString('hex'), i);
});

let replication: Replication | undefined;
if (mode !== 'none') {
  // The defaults an embedding app gets (sync-interval 1s, monitor 1s, checkpoints by page count).
  replication = await startReplication({
    dbPath,
    replicas: [{ name: 'file', client: new FileReplicaClient({ path: join(dir, 'replica') }) }],
    inline: mode === 'inline',
  });
  if (replication.inWorker !== (mode === 'ours'))
    throw new Error(`${mode}: replication ${replication.inWorker ? 'in a worker' : 'in-process'}`);
  await replication.sync(); // the snapshot is written before the measured run, as in a long-lived app
}

// Warm up the write path, then measure.
for (let i = 0; i < 200; i++) tx(i);

const h = monitorEventLoopDelay({ resolution: 1 });
const late: number[] = [];
const commits: number[] = [];
let n = 0;
const interval = 1000 / rate;
const t0 = performance.now();
h.enable();
await new Promise<void>((resolve) => {
  // A 1 ms timer: how late it fires is what a request handler waiting on the loop would see.
  let expected = performance.now() + 1;
  const probe = setInterval(() => {
    const now = performance.now();
    late.push(Math.max(0, now - expected));
    expected = now + 1;
  }, 1);
  // Commits on schedule: each tick commits the transactions due by now (a steady 500 tx/s app).
  const writer = setInterval(() => {
    const due = Math.floor((performance.now() - t0) / interval);
    while (n < due) {
      const c0 = performance.now();
      tx(n);
      commits.push(performance.now() - c0);
      n++;
    }
    if (performance.now() - t0 >= seconds * 1000) {
      clearInterval(writer);
      clearInterval(probe);
      resolve();
    }
  }, 2);
});
h.disable();
const elapsed = (performance.now() - t0) / 1000;
await replication?.close();
const rows = (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
db.close();

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};
const summary = (xs: number[]) => ({ p50: pct(xs, 50), p99: pct(xs, 99), max: Math.max(...xs) });
process.stdout.write(
  `${JSON.stringify({
    delay: { p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6 },
    timerLate: summary(late),
    commit: summary(commits),
    commitsOver5ms: commits.filter((c) => c > 5).length,
    tx: n,
    seconds: elapsed,
    rows,
  })}\n`,
);
