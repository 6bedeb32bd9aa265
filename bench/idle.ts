/**
 * `npm run bench:idle`: the S3 requests an idle replicated database costs, stn-replicate against the
 * real Litestream v0.3.13, counted by a local S3 server (fauxqs, in process) that sees every request.
 *
 *   npm run bench:idle -- [--seconds N] [--settle N] [--dbs N] [--no-lease] [--timer auto|gnu-time|python] [--keep]
 *
 *   --seconds N   length of each tool's idle window (default 60)
 *   --dbs N       databases in the one config (default 1), each with its own replica path in the bucket:
 *                 what many databases in one `replicate -config` cost idle (CPU and peak RSS are reported)
 *   --settle N    seconds between the snapshot and the window (default 90); see below
 *   --no-lease    ours replicates without the replica's lease (`lease: false`): what the lease's renewals
 *                 cost, by difference with a run with it (Litestream has no lease)
 *   --keep        keep the temp dir (databases, configs)
 *
 * Each tool in turn, in its own bucket with its own copy of the database and the same config (one s3
 * replica, sync-interval 1s, everything else at its default): create a WAL database with ~1 MiB of rows,
 * start `replicate -config`, wait until its snapshot object is complete in the bucket, let it settle,
 * count its requests over the window with no writes at all, then stop it with SIGINT. Start-up
 * (spawn to window) and shutdown requests are reported apart, with when each start-up request came.
 * Per hour = window count x 3600 / window seconds.
 *
 * Why settle: both tools checkpoint once when the database has been idle for checkpoint-interval
 * (default 1m) with frames in the WAL, which ships one more WAL segment (a new index) about a minute
 * after the last write, here after start-up's own writes. That is the tail of the last write, not idle
 * traffic, and a 60 s window right after the snapshot would count it and extrapolate it to 60 an hour.
 * `--settle 0` measures from the snapshot on.
 *
 * Litestream's retention check runs every retention-check-interval (default 1h), so a window of a
 * minute or so measures the traffic between checks; the target for ours there is 0 requests.
 * Prints the report and writes it to bench/out/idle-<timestamp>.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { procCpuSeconds, procRssMiB, TimedReplicator, type Tool } from './lib/replicate-proc.js';
import { RequestLog } from './lib/request-log.js';
import { s3Config } from './lib/s3-replica.js';
import { KINDS, replicationTotalOf, totalOf, zeroCounts, type KindCounts, type S3Request } from './lib/s3-requests.js';
import { createBucket, startS3Server } from './lib/s3-server.js';
import { findRoot, litestreamVersion, median, pickTimer, table, type Timer } from './lib/shared.js';

const TOOLS: Tool[] = ['ours', 'litestream'];
const NAMES: Record<Tool, string> = { ours: 'stn-replicate', litestream: 'litestream v0.3.13' };
const SYNC_INTERVAL = '1s';
const SNAPSHOT_TIMEOUT_MS = 60_000;
const HOUR_S = 3600;

interface Ctx {
  root: string;
  tmp: string;
  endpoint: string;
  requests: RequestLog;
  timer: Timer;
  windowSeconds: number;
  settleSeconds: number;
  dbs: number;
  noLease: boolean;
}

interface ToolResult {
  tool: Tool;
  bucket: string;
  error?: string;
  /** Spawn to the snapshot object complete. */
  snapshotSeconds?: number;
  /** Spawn to the start of the window. */
  windowStartSeconds?: number;
  windowSeconds?: number;
  window: KindCounts;
  perHour?: Record<string, number>;
  windowCpuSeconds?: number;
  startup: KindCounts;
  shutdown: KindCounts;
  exitCode?: number | null;
  maxRssMiB?: number;
  /** Resident set during the window (sampled every second): what idle costs, without start-up's peak. */
  windowRssMiB?: { median: number; max: number };
  /** The first requests of start-up (s from spawn) and of the window (s from its start): what they were. */
  startupSample: RequestAt[];
  windowSample: RequestAt[];
  warnOrErrorLines: string[];
}

interface RequestAt {
  atSeconds: number;
  op: string;
  /** The object key, or `prefix=…` for a listing. */
  key: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A WAL-mode database with ~1 MiB of rows, closed: from here on nobody writes to it. */
function createIdleDb(path: string): void {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
    const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
    db.transaction(() => {
      for (let i = 0; i < 2000; i++) ins.run(`row ${i} `.padEnd(500, 'x'));
    })();
  } finally {
    db.close();
  }
}

async function idleRun(ctx: Ctx, tool: Tool): Promise<ToolResult> {
  const bucket = `idle-${tool}`;
  const dir = join(ctx.tmp, tool);
  mkdirSync(dir, { recursive: true });
  await createBucket(ctx.endpoint, bucket);
  const config = join(dir, 'litestream.yml');
  const entries: string[] = [];
  for (let i = 0; i < ctx.dbs; i++) {
    const dbPath = join(dir, ctx.dbs === 1 ? 'db.sqlite' : `db-${i}.sqlite`);
    createIdleDb(dbPath);
    // Each database's entry of a one-database config, under one `dbs:` key.
    entries.push(
      ...s3Config(dbPath, { endpoint: ctx.endpoint, bucket, prefix: ctx.dbs === 1 ? 'db' : `db-${i}` }, [
        `sync-interval: ${SYNC_INTERVAL}`,
        ...(ctx.noLease && tool === 'ours' ? ['lease: false'] : []),
      ])
        .split('\n')
        .slice(1),
    );
  }
  writeFileSync(config, ['dbs:', ...entries.filter((l) => l !== ''), ''].join('\n'));

  const { requests } = ctx;
  requests.setPhase(bucket, 'startup');
  const t0 = performance.now();
  const rep = TimedReplicator.start(tool, ctx.root, config, ctx.timer, join(dir, 'time.txt'));
  const result: ToolResult = {
    tool,
    bucket,
    window: zeroCounts(),
    startup: zeroCounts(),
    shutdown: zeroCounts(),
    startupSample: [],
    windowSample: [],
    warnOrErrorLines: [],
  };
  let windowStart: number | undefined;
  try {
    await requests.waitForSnapshot(bucket, SNAPSHOT_TIMEOUT_MS * ctx.dbs, rep.whenExited(), ctx.dbs);
    result.snapshotSeconds = (performance.now() - t0) / 1000;
    await Promise.race([sleep(ctx.settleSeconds * 1000), rep.whenExited()]);
    result.windowStartSeconds = (performance.now() - t0) / 1000;

    // The window: nothing writes to the database; whatever the tool asks of the store is counted.
    const pid = rep.replicatorPid();
    const cpu0 = pid !== undefined ? procCpuSeconds(pid) : undefined;
    requests.setPhase(bucket, 'window');
    windowStart = performance.now();
    const rss: number[] = [];
    const sampleRss = () => {
      const v = pid !== undefined ? procRssMiB(pid) : undefined;
      if (v !== undefined) rss.push(v);
    };
    sampleRss();
    const sampler = setInterval(sampleRss, 1000);
    try {
      await Promise.race([sleep(ctx.windowSeconds * 1000), rep.whenExited()]);
    } finally {
      clearInterval(sampler);
    }
    sampleRss();
    if (rss.length > 0) result.windowRssMiB = { median: median(rss), max: Math.max(...rss) };
    requests.setPhase(bucket, 'shutdown');
    const windowSeconds = (performance.now() - windowStart) / 1000;
    const cpu1 = pid !== undefined ? procCpuSeconds(pid) : undefined;
    result.windowSeconds = windowSeconds;
    if (cpu0 !== undefined && cpu1 !== undefined) result.windowCpuSeconds = cpu1 - cpu0;

    const stop = await rep.stop('SIGINT');
    result.exitCode = stop.code;
    result.maxRssMiB = stop.usage?.maxRssMiB;
    if (stop.killed) result.error = `${NAMES[tool]} did not exit after SIGINT (SIGKILLed)`;
  } catch (e) {
    requests.setPhase(bucket, 'shutdown');
    await rep.kill();
    result.error = e instanceof Error ? e.message : String(e);
  }
  requests.setPhase(bucket, 'after');
  result.window = requests.counts(bucket, 'window');
  result.startup = requests.counts(bucket, 'startup');
  result.shutdown = requests.counts(bucket, 'shutdown');
  if (result.windowSeconds !== undefined) {
    const w = result.windowSeconds;
    result.perHour = Object.fromEntries<number>([
      ...KINDS.map((k): [string, number] => [k, (result.window[k] * HOUR_S) / w]),
      ['total', (totalOf(result.window) * HOUR_S) / w],
    ]);
  }
  const since =
    (from: number | undefined) =>
    (r: S3Request): RequestAt => ({
      atSeconds: from === undefined ? NaN : (r.t - from) / 1000,
      op: r.op,
      key: r.prefix !== undefined ? `prefix=${r.prefix}` : r.key,
    });
  result.startupSample = requests.samples(bucket, 'startup').map(since(t0));
  result.windowSample = requests.samples(bucket, 'window').map(since(windowStart));
  // (With --no-lease, ours warns once per replica that it replicates unleased: asked for, not a problem.)
  const asked = (t: string) => ctx.noLease && /replicating without a lease/.test(t);
  result.warnOrErrorLines = rep.lines
    .map((l) => l.text)
    .filter((t) => /level=(WARN|ERROR)|\bpanic\b/i.test(t) && !asked(t))
    .slice(0, 10);
  return result;
}

const f = (x: number | undefined, d = 1) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(d));

function formatReport(o: {
  dbs: number;
  noLease: boolean;
  createdAt: string;
  server: string;
  litestream: string;
  windowSeconds: number;
  settleSeconds: number;
  results: ToolResult[];
  stray: string[];
}): string {
  const rs = o.results;
  const perHourRow = (label: string, pick: (r: ToolResult) => [number | undefined, number]) => [
    label,
    ...rs.map((r) => {
      const [perHour, count] = pick(r);
      return r.windowSeconds === undefined ? '—' : `${f(perHour, 0)} (${count})`;
    }),
  ];
  const ours = rs.find((r) => r.tool === 'ours');
  const oursTotal = ours?.windowSeconds !== undefined ? replicationTotalOf(ours.window) : undefined;
  const lines = [
    `idle benchmark: S3 requests of an idle replicated database, stn-replicate vs Litestream ${o.litestream} (${o.createdAt})`,
    '',
    `server   ${o.server} in process on 127.0.0.1, counting every request by bucket (one per tool)`,
    `config   ${o.dbs} database${o.dbs === 1 ? '' : 's'}, each with one s3 replica, sync-interval ${SYNC_INTERVAL}${o.noLease ? ', ours with lease: false' : ''}, all else default (monitor-interval 1s,`,
    `         retention 24h checked every 1h, no snapshot-interval, no validation); ~1 MiB WAL-mode databases, no writes after the tool starts`,
    `window   ${o.windowSeconds} s per tool, starting ${o.settleSeconds} s after its snapshot is complete in the bucket`,
    '',
    'requests per hour while idle (count in the window), between retention checks',
    table(
      ['', ...rs.map((r) => NAMES[r.tool])],
      [
        ...KINDS.map((k) => perHourRow(k, (r) => [r.perHour?.[k], r.window[k]])),
        perHourRow('total', (r) => [r.perHour?.total, totalOf(r.window)]),
      ],
    ),
    `  target: stn-replicate 0 requests between retention checks (LEASE apart: one renewal per TTL/3): ${oursTotal === undefined ? '—' : oursTotal === 0 ? 'MET' : 'NOT MET'}`,
    '',
    table(
      ['', ...rs.map((r) => NAMES[r.tool])],
      [
        ['window s (measured)', ...rs.map((r) => f(r.windowSeconds))],
        ['CPU s in the window', ...rs.map((r) => f(r.windowCpuSeconds, 2))],
        ['spawn -> snapshot in bucket s', ...rs.map((r) => f(r.snapshotSeconds))],
        ['spawn -> window start s', ...rs.map((r) => f(r.windowStartSeconds))],
        ['start-up requests', ...rs.map((r) => countsText(r.startup))],
        ['shutdown requests (SIGINT)', ...rs.map((r) => countsText(r.shutdown))],
        ['exit code', ...rs.map((r) => String(r.exitCode ?? '—'))],
        [
          'RSS in the window MiB (median / max)',
          ...rs.map((r) => (r.windowRssMiB ? `${f(r.windowRssMiB.median, 1)} / ${f(r.windowRssMiB.max, 1)}` : '—')),
        ],
        ['peak RSS MiB (whole life)', ...rs.map((r) => f(r.maxRssMiB))],
      ],
    ),
  ];
  const listing = (title: string, sample: RequestAt[]) =>
    sample.length === 0 ? [] : ['', title, ...sample.map((s) => `  ${f(s.atSeconds, 2).padStart(7)}  ${s.op.padEnd(24)} ${s.key}`)];
  for (const r of rs) lines.push(...listing(`${NAMES[r.tool]}: start-up requests (s from spawn)`, r.startupSample));
  for (const r of rs) lines.push(...listing(`${NAMES[r.tool]}: first requests of the window (s from its start)`, r.windowSample));
  const problems = [
    ...rs.filter((r) => r.error).map((r) => `${NAMES[r.tool]}: ${r.error}`),
    ...rs.flatMap((r) => r.warnOrErrorLines.map((l) => `${NAMES[r.tool]} logged: ${l}`)),
    ...o.stray.map((b) => `requests to bucket ${b}, which no tool was given`),
  ];
  if (problems.length > 0) lines.push('', 'PROBLEMS', ...problems.map((p) => `  - ${p.split('\n').join('\n    ')}`));
  return lines.join('\n');
}

/** "12 (LIST 3, PUT 9)": the total, then the non-zero kinds. */
function countsText(c: KindCounts): string {
  const parts = KINDS.filter((k) => c[k] > 0).map((k) => `${k} ${c[k]}`);
  return `${totalOf(c)}${parts.length ? ` (${parts.join(', ')})` : ''}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      settle: { type: 'string', default: '90' },
      timer: { type: 'string', default: 'auto' },
      keep: { type: 'boolean', default: false },
      dbs: { type: 'string', default: '1' },
      'no-lease': { type: 'boolean', default: false },
    },
  });
  const dbs = Number(values.dbs);
  if (!Number.isInteger(dbs) || dbs < 1) throw new Error(`--dbs must be a positive integer, not ${values.dbs}`);
  const windowSeconds = Number(values.seconds);
  const settleSeconds = Number(values.settle);
  if (!(windowSeconds > 0)) throw new Error(`--seconds must be a positive number, not ${values.seconds}`);
  if (!(settleSeconds >= 0)) throw new Error(`--settle must be a number >= 0, not ${values.settle}`);
  const root = findRoot();
  const outDir = join(root, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  const log = (s: string) => console.log(s);

  const requests = new RequestLog();
  const server = await startS3Server({ onRequest: requests.onRequest, onResponse: requests.onResponse });
  const tmp = mkdtempSync(join(tmpdir(), 'stn-bench-idle-'));
  const ctx: Ctx = {
    root,
    tmp,
    endpoint: server.endpoint,
    requests,
    timer: pickTimer(values.timer),
    windowSeconds,
    settleSeconds,
    dbs,
    noLease: values['no-lease'],
  };
  const results: ToolResult[] = [];
  try {
    log(`bench:idle  ${server.version} at ${server.endpoint}  window ${windowSeconds} s per tool  tmp ${tmp}`);
    for (const tool of TOOLS) {
      log(`${NAMES[tool]}: starting; waiting for its snapshot, ${settleSeconds} s to settle, then ${windowSeconds} s idle…`);
      const r = await idleRun(ctx, tool);
      results.push(r);
      log(`${NAMES[tool]}: ${r.error ? `ERROR ${r.error}` : `${totalOf(r.window)} requests in ${f(r.windowSeconds)} s`}`);
    }
  } finally {
    await server.stop();
    if (!values.keep) rmSync(tmp, { recursive: true, force: true });
  }

  const createdAt = new Date().toISOString();
  const report = {
    createdAt,
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model.trim() ?? 'unknown', node: process.version },
    server: server.version,
    litestream: litestreamVersion(),
    syncInterval: SYNC_INTERVAL,
    windowSeconds,
    settleSeconds,
    dbs,
    noLease: values['no-lease'],
    results,
    stray: requests.strayBuckets(results.map((r) => r.bucket)),
  };
  const jsonPath = join(outDir, `idle-${createdAt.replace(/[:.]/g, '-')}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  log(`\n${formatReport(report)}\n\nJSON: ${relative(root, jsonPath)}`);
  if (results.some((r) => r.error)) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
