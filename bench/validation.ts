/**
 * `npm run bench:validation`: how long `validation-interval` holds the application's writes up, ours
 * against the real Litestream v0.3.13 in the same run.
 *
 *   npm run bench:validation -- [--mb N] [--seconds N] [--interval DURATION] [--tx-ms N] [--keep]
 *
 *   --mb N          rows in the database before replication starts (default 64 MiB)
 *   --seconds N     how long the app writes while validations run (default 20)
 *   --interval D    validation-interval of the replica (default 2s)
 *   --tx-ms N       the app commits one transaction of 20 rows (~20 KB) every N ms (default 5)
 *
 * Each tool in turn, twice (validation off, then on), on its own copy of the database and the same
 * config (one file replica, sync-interval 100ms, validation-interval 0s or as given): start `replicate -config`, wait for the snapshot,
 * then a separate app process writes for the given time and times every commit (busy_timeout 5000, so a
 * commit waits for a lock rather than failing). The app's slowest commits are where a replicator held
 * the write lock: Litestream's validation forces a RESTART checkpoint (it waits for every reader and
 * copies the whole WAL into the database); ours pins the position with one incremental copy.
 * Checkpoints also hold the lock (ours for the whole PASSIVE checkpoint, see docs/compatibility.md), so
 * the run without validation is the baseline each tool's validation run is compared with.
 * Prints the report and writes it to bench/out/validation-<timestamp>.json.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { TimedReplicator, type Tool } from './lib/replicate-proc.js';
import { cleanEnv, findRoot, litestreamVersion, pickTimer } from './lib/shared.js';

const TOOLS: Tool[] = ['ours', 'litestream'];
const NAMES: Record<Tool, string> = { ours: 'stn-replicate', litestream: 'litestream v0.3.13' };

const { values: args } = parseArgs({
  options: {
    mb: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '20' },
    interval: { type: 'string', default: '2s' },
    'tx-ms': { type: 'string', default: '5' },
    keep: { type: 'boolean', default: false },
  },
});

interface Latencies {
  commits: number;
  maxMs: number;
  p99Ms: number;
  p999Ms: number;
  over50Ms: number;
}

interface ToolResult {
  tool: Tool;
  /** validation-interval of this run ('0s': validation off, the baseline). */
  interval: string;
  validationsLogged: number;
  mismatchesLogged: number;
  /** The distinct validation messages (fields after msg= dropped), to see what each tool reported. */
  validationMessages: string[];
  app: Latencies;
}

function appSource(root: string): string {
  const lib = join(root, 'node_modules', 'better-sqlite3');
  return `import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const Database = require(${JSON.stringify(lib)});
const [dbPath, seconds, txMs] = process.argv.slice(2).map((a, i) => (i === 0 ? a : Number(a)));
const db = new Database(dbPath);
db.pragma('busy_timeout = 5000');
const ins = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
const tx = db.transaction((i) => { for (let j = 0; j < 20; j++) ins.run('x'.repeat(1000), i); });
const ms = [];
const end = Date.now() + seconds * 1000;
let i = 0;
const tick = () => {
  if (Date.now() >= end) {
    db.close();
    ms.sort((a, b) => a - b);
    const q = (p) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
    process.stdout.write(JSON.stringify({ commits: ms.length, maxMs: ms.at(-1), p99Ms: q(0.99), p999Ms: q(0.999), over50Ms: ms.filter((x) => x > 50).length }) + '\\n');
    return;
  }
  const t0 = process.hrtime.bigint();
  tx(i++);
  ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  setTimeout(tick, txMs);
};
tick();
`;
}

function runApp(script: string, dbPath: string): Promise<Latencies> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, dbPath, args.seconds, args['tx-ms']], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Latencies) : reject(new Error(`app exited ${code}`))));
  });
}

function makeDatabase(path: string, mb: number): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)');
  const ins = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
  const row = 'y'.repeat(1000);
  const rows = Math.ceil((mb * 1024 * 1024) / 1050);
  for (let done = 0; done < rows;) {
    db.transaction(() => {
      for (let j = 0; j < 5000 && done < rows; j++, done++) ins.run(row, done);
    })();
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

function hasSnapshot(replicaDir: string): boolean {
  const gens = join(replicaDir, 'generations');
  if (!existsSync(gens)) return false;
  return readdirSync(gens).some((g) => {
    const d = join(gens, g, 'snapshots');
    return existsSync(d) && readdirSync(d).some((f) => f.endsWith('.snapshot.lz4'));
  });
}

async function runTool(tool: Tool, interval: string, root: string, tmp: string, template: string, app: string): Promise<ToolResult> {
  const dir = join(tmp, `${tool}-${interval}`);
  mkdirSync(dir);
  const dbPath = join(dir, 'app.db');
  copyFileSync(template, dbPath);
  const replicaDir = join(dir, 'replica');
  const config = join(dir, 'litestream.yml');
  writeFileSync(
    config,
    [
      'dbs:',
      `  - path: ${dbPath}`,
      '    replicas:',
      '      - type: file',
      `        path: ${replicaDir}`,
      '        sync-interval: 100ms',
      `        validation-interval: ${interval}`,
      '',
    ].join('\n'),
  );
  const r = TimedReplicator.start(tool, root, config, pickTimer('auto'), join(dir, 'time.txt'));
  try {
    for (let waited = 0; !hasSnapshot(replicaDir); waited += 100) {
      if (waited > 120_000 || !r.running) throw new Error(`${tool}: no snapshot:\n${r.tail()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    const from = r.lines.length;
    const latencies = await runApp(app, dbPath);
    const lines = r.lines.slice(from).map((l) => l.text);
    await r.stop('SIGINT');
    return {
      tool,
      interval,
      validationsLogged: lines.filter((l) => /validat/i.test(l)).length,
      mismatchesLogged: lines.filter((l) => /mismatch/i.test(l)).length,
      validationMessages: [...new Set(lines.filter((l) => /validat/i.test(l)).map((l) => /msg=("[^"]*"|\S+)/.exec(l)?.[1] ?? l))],
      app: latencies,
    };
  } finally {
    await r.kill();
  }
}

async function main(): Promise<void> {
  const root = findRoot();
  const tmp = mkdtempSync(join(tmpdir(), 'stn-bench-validation-'));
  try {
    const template = join(tmp, 'template.db');
    process.stderr.write(`building a ${args.mb} MiB database...\n`);
    makeDatabase(template, Number(args.mb));
    const app = join(tmp, 'app.mjs');
    writeFileSync(app, appSource(root));
    const results: ToolResult[] = [];
    // Each tool without validation first (its checkpoints alone), then with it: the difference is
    // what validation itself costs the application.
    for (const tool of TOOLS) {
      for (const interval of ['0s', args.interval]) {
        process.stderr.write(`${NAMES[tool]}: writing for ${args.seconds}s with validation-interval ${interval}...\n`);
        results.push(await runTool(tool, interval, root, tmp, template, app));
      }
    }
    const find = (tool: Tool, on: boolean) => results.find((r) => r.tool === tool && (r.interval === '0s') !== on)!;
    const row = (r: ToolResult) =>
      `${NAMES[r.tool].padEnd(20)} ${r.interval.padStart(10)} ${String(r.app.commits).padStart(7)} ${r.app.maxMs.toFixed(1).padStart(9)} ${r.app.p999Ms.toFixed(1).padStart(9)} ${r.app.p99Ms.toFixed(1).padStart(8)} ${String(r.app.over50Ms).padStart(7)} ${String(r.validationsLogged).padStart(11)} ${String(r.mismatchesLogged).padStart(9)}`;
    const ours = find('ours', true);
    const theirs = find('litestream', true);
    const report = [
      `validation stall: ${args.mb} MiB database, one 20-row commit every ${args['tx-ms']} ms for ${args.seconds} s per run (${litestreamVersion()})`,
      `${'tool'.padEnd(20)} ${'validation'.padStart(10)} ${'commits'.padStart(7)} ${'max ms'.padStart(9)} ${'p99.9 ms'.padStart(9)} ${'p99 ms'.padStart(8)} ${'>50 ms'.padStart(7)} ${'val. lines'.padStart(11)} ${'mismatch'.padStart(9)}`,
      ...results.map(row),
      `slowest commit with validation minus without: stn-replicate ${(ours.app.maxMs - find('ours', false).app.maxMs).toFixed(1)} ms, ` +
        `litestream ${(theirs.app.maxMs - find('litestream', false).app.maxMs).toFixed(1)} ms`,
      `ratio ours/litestream with validation: slowest commit ${(ours.app.maxMs / theirs.app.maxMs).toFixed(2)}, p99.9 ${(ours.app.p999Ms / theirs.app.p999Ms).toFixed(2)}`,
    ].join('\n');
    process.stdout.write(`${report}\n`);
    for (const r of [ours, theirs])
      process.stdout.write(`${NAMES[r.tool]} logged: ${r.validationMessages.join('; ') || 'nothing about validation'}\n`);
    const outDir = join(root, 'bench', 'out');
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `validation-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify({ args, results }, null, 2));
    process.stderr.write(`wrote ${relative(process.cwd(), file)}\n`);
  } finally {
    if (!args.keep) rmSync(tmp, { recursive: true, force: true });
    else process.stderr.write(`kept ${tmp}\n`);
  }
}

await main();
