/**
 * `npm run bench:restore`: restore time and peak memory of stn-replicate against the real Litestream
 * v0.3.13 on the same ~200 MB replica, in the same run, alternating the two.
 *
 *   npm run bench:restore -- [--runs N] [--rebuild]
 *
 * The replica (written by the real Litestream: one snapshot + several WAL indexes) is cached in
 * bench/out/restore-fixture/ and rebuilt with --rebuild. Each variant runs once untimed, then N times;
 * the report gives medians (and min/max), the ratio ours/Litestream of the medians, and peak RSS.
 * Timing and memory come from /usr/bin/time (GNU time) when present, else from Python's
 * resource.getrusage(RUSAGE_CHILDREN).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { LitestreamReplicator, litestreamBin } from '../test/helpers/oracle.js';
import { waitForUpload } from '../test/helpers/fixtures.js';
import { contentDigest } from '../test/helpers/source-db.js';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..', '..');
const outDir = join(root, 'bench', 'out');
const fixture = join(outDir, 'restore-fixture');
const dbPath = join(fixture, 'db.sqlite');
const replicaDir = join(fixture, 'replica');
const cli = join(root, 'bin', 'stn-replicate.js');

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1] ?? 3) || 3;
const rebuild = args.includes('--rebuild');

const ROW_BYTES = 4000;
/** Half random (incompressible), half repeated text: LZ4 shrinks it to roughly 60%, like app data. */
function row(i: number): string {
  const random = randomBytes(ROW_BYTES / 2 / 4 * 3).toString('base64');
  return (random + `row ${i} agent state `.repeat(200)).slice(0, ROW_BYTES);
}

async function buildFixture(): Promise<void> {
  rmSync(fixture, { recursive: true, force: true });
  mkdirSync(fixture, { recursive: true });
  console.log('building a ~200 MB replica with the real Litestream (cached in bench/out/)…');
  const initial = new Database(dbPath);
  initial.pragma('journal_mode = WAL');
  initial.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)');
  const insert = initial.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
  const initialRows = Math.round((170 * 1024 * 1024) / ROW_BYTES);
  for (let i = 0; i < initialRows; i += 2000) {
    initial.transaction(() => {
      for (let j = i; j < Math.min(initialRows, i + 2000); j++) insert.run(row(j), j);
    })();
  }
  initial.close(); // checkpoints the WAL into the database file

  const db = new Database(dbPath);
  db.pragma('busy_timeout = 5000');
  const ls = LitestreamReplicator.start({ dbPath, replicaDir, syncInterval: '100ms' });
  try {
    await ls.waitForLog(/msg="snapshot written"/, 0, 120_000);
    // ~30 MB more in 1 MB transactions: with the default min-checkpoint-page-count (1000 pages, 4 MB)
    // this gives a new WAL index every few transactions.
    const more = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    for (let tx = 0; tx < 30; tx++) {
      const after = ls.lines.length;
      db.transaction(() => {
        for (let j = 0; j < 250; j++) more.run(row(initialRows + tx * 250 + j), tx);
        db.prepare('UPDATE t SET n = n + 1 WHERE id % 97 = ?').run(tx % 97);
      })();
      await waitForUpload(ls, dbPath, after);
    }
  } finally {
    await ls.stop();
    db.close();
  }
}

interface Sample {
  seconds: number;
  rssMb: number;
}

const haveGnuTime = existsSync('/usr/bin/time');

/** Runs a command to completion; returns wall seconds and the child's peak RSS. */
function measure(cmd: string, cmdArgs: string[]): Sample {
  if (haveGnuTime) {
    const r = spawnSync('/usr/bin/time', ['-f', '%e %M', cmd, ...cmdArgs], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    if (r.status !== 0) throw new Error(`${cmd} ${cmdArgs.join(' ')} failed:\n${r.stderr}`);
    const [secs, kb] = r.stderr.trim().split('\n').at(-1)!.split(' ').map(Number);
    return { seconds: secs!, rssMb: kb! / 1024 };
  }
  const py = 'import resource,subprocess,sys,time\nt=time.time()\nr=subprocess.run(sys.argv[1:])\nd=time.time()-t\nprint(d, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)';
  const r = spawnSync('python3', ['-c', py, cmd, ...cmdArgs], { encoding: 'utf8' });
  const [secs, kb, code] = r.stdout.trim().split('\n').at(-1)!.split(' ').map(Number);
  if (code !== 0) throw new Error(`${cmd} failed:\n${r.stderr}`);
  return { seconds: secs!, rssMb: kb! / 1024 };
}

function clean(out: string): void {
  for (const f of readdirSync(dirname(out))) if (f.startsWith('restored')) rmSync(join(dirname(out), f), { force: true });
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s.at(-1)! };
};

async function main(): Promise<void> {
  if (rebuild || !existsSync(join(fixture, 'ready'))) {
    await buildFixture();
    writeFileSync(join(fixture, 'ready'), new Date().toISOString());
  }
  const out = join(fixture, 'restored.db');
  const url = `file://${replicaDir}`;
  const variants: Record<string, [string, string[]]> = {
    'stn-replicate': [process.execPath, [cli, 'restore', '-o', out, url]],
    'stn-replicate -integrity-check none': [process.execPath, [cli, 'restore', '-integrity-check', 'none', '-o', out, url]],
    'litestream v0.3.13': [litestreamBin(), ['restore', '-o', out, url]],
    'cp (floor)': ['cp', [dbPath, out]],
  };

  // Correctness once: both restores equal the source.
  const source = contentDigest(dbPath);
  for (const name of ['stn-replicate', 'litestream v0.3.13']) {
    clean(out);
    measure(...variants[name]!);
    if (contentDigest(out) !== source) throw new Error(`${name} restored different content than the source`);
  }

  const samples: Record<string, Sample[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (let i = 0; i < runs; i++) {
    for (const [name, [cmd, a]] of Object.entries(variants)) {
      clean(out);
      samples[name]!.push(measure(cmd, a));
    }
  }
  clean(out);

  const files = readdirSync(replicaDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  const size = (re: RegExp) => files.filter((e) => re.test(e.name)).reduce((n, e) => n + statSync(join(e.parentPath, e.name)).size, 0);
  const segmentCount = files.filter((e) => e.name.endsWith('.wal.lz4')).length;
  const indexes = new Set(files.filter((e) => e.name.endsWith('.wal.lz4')).map((e) => e.name.slice(0, 8))).size;
  const mb = (n: number) => (n / 1048576).toFixed(1);

  console.log(`\ndatabase ${mb(statSync(dbPath).size)} MB; replica: snapshot ${mb(size(/\.snapshot\.lz4$/))} MB, ${segmentCount} WAL segments (${mb(size(/\.wal\.lz4$/))} MB) in ${indexes} indexes`);
  console.log(`${runs} runs per variant after one warm-up, alternating; wall seconds and peak RSS of the process\n`);
  const rows = Object.entries(samples).map(([name, ss]) => {
    const t = stats(ss.map((s) => s.seconds));
    const m = stats(ss.map((s) => s.rssMb));
    return { name, t, m };
  });
  console.log(`${'variant'.padEnd(38)}${'median s'.padStart(9)}${'min'.padStart(7)}${'max'.padStart(7)}${'peak RSS MB'.padStart(13)}`);
  for (const r of rows) {
    console.log(`${r.name.padEnd(38)}${r.t.median.toFixed(2).padStart(9)}${r.t.min.toFixed(2).padStart(7)}${r.t.max.toFixed(2).padStart(7)}${r.m.max.toFixed(0).padStart(13)}`);
  }
  const lsMedian = rows.find((r) => r.name.startsWith('litestream'))!.t.median;
  const ratios = Object.fromEntries(rows.filter((r) => r.name.startsWith('stn')).map((r) => [r.name, r.t.median / lsMedian]));
  console.log('');
  for (const [name, ratio] of Object.entries(ratios)) console.log(`ratio ${name} / litestream (median time): ${ratio.toFixed(2)}`);

  mkdirSync(outDir, { recursive: true });
  const report = join(outDir, `restore-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(report, JSON.stringify({ runs, samples, ratios, dbBytes: statSync(dbPath).size, segmentCount, indexes }, null, 2));
  console.log(`\nreport: ${report}`);
}

await main();
