/**
 * `npm run bench:replicate`: what continuous replication costs the app and how fresh the replica is,
 * stn-replicate against the real Litestream v0.3.13, in one run, alternating, on the same config.
 *
 *   npm run bench:replicate -- [--runs N] [--tx N] [--commits N] [--p1-sync-interval D]
 *                              [--min-checkpoint-page-count N] [--timer auto|gnu-time|python]
 *                              [--skip-verify] [--keep] [--age]
 *
 *   P1  app write throughput while replicated / without a replicator. The app is a separate Node process
 *       (better-sqlite3, synchronous=FULL, WAL, busy_timeout 5000) doing --tx transactions of 5 rows of
 *       200 bytes; it times its own write loop. Ratio per run = baseline time / replicated time.
 *   P2  commit-to-replica lag with sync-interval 10ms (monitor-interval left at its default): commit one
 *       row, time until a new WAL segment file exists in the replica (fs.watch + 2 ms poll); --commits
 *       commits spaced 50-300 ms apart at random, each waiting for its segment. Once per tool.
 *   P4  replicator CPU (user+sys) over its whole life during a P1 run, from GNU time (or Python's
 *       resource); also the CPU used during the app's run alone, from /proc/<pid>/stat.
 *   P5  replicator peak RSS during a P1 run, from the same timer.
 *
 * --age: both tools replicate with `age:` (a key pair made for the run; every object LZ4-compressed, then
 * encrypted), and the replica check restores through the config (only a config holds the identity).
 *
 * Every run gets a fresh temp dir and a clean environment (PATH, HOME). Each replicator must have
 * written its snapshot (or first WAL segment) before the app starts; it is stopped with SIGINT
 * afterwards (both do a final sync) and, unless --skip-verify, its replica is restored with the real
 * Litestream and the row count checked. Prints the report and writes it, with every sample, to
 * bench/out/replicate-<timestamp>.json. (Event-loop delay does not apply: the app is a separate process.)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { ageConfigLines, newAgeKeys } from './lib/age-replica.js';
import { countRows, createDb, ROWS_PER_TX, runApp, writeApp, SCHEMA } from './lib/replicate-app.js';
import { procCpuSeconds, SegmentWatcher, TimedReplicator, waitStarted, writeConfig, type Tool, type Usage } from './lib/replicate-proc.js';
import { cleanEnv, findRoot, litestreamBin, litestreamVersion, median, pickTimer, table, type Timer } from './lib/shared.js';

type Variant = 'baseline' | Tool;
const NAMES: Record<Variant, string> = { baseline: 'no replicator', ours: 'stn-replicate', litestream: 'litestream v0.3.13' };
const P2_SYNC_INTERVAL = '10ms';

// The figures the brief quotes for Litestream on this machine, printed next to what this run measured.
const REF = {
  p1Ratio: '0.45-0.53',
  p2p50: '~810 ms',
  cpu: '1.1-1.3 s',
  rss: '53-55 MB',
};
const TARGET = { p1Ratio: 0.9, p2p50Ms: 20, p2p90Ms: 50 };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Nearest-rank percentile. */
function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

interface LogSummary {
  lines: number;
  segmentLines: number;
  snapshotLines: number;
  warnOrError: string[];
  tail: string[];
}

function summarizeLog(rep: TimedReplicator): LogSummary {
  const texts = rep.lines.map((l) => l.text);
  return {
    lines: texts.length,
    segmentLines: texts.filter((t) => t.includes('msg="wal segment written"')).length,
    snapshotLines: texts.filter((t) => t.includes('msg="snapshot written"')).length,
    warnOrError: texts.filter((t) => /level=(WARN|ERROR)|\bERROR\b|\bpanic\b/i.test(t)).slice(0, 20),
    tail: texts.slice(-15),
  };
}

/** Restores the replica with the real Litestream (through `config` with --age) and counts the rows. */
function verifyReplica(replicaDir: string, out: string, via?: { config: string; dbPath: string }): { rows: number } | { error: string } {
  const source = via ? ['-config', via.config, via.dbPath] : [`file://${replicaDir}`];
  const r = spawnSync(litestreamBin(), ['restore', '-o', out, ...source], { env: cleanEnv(), encoding: 'utf8' });
  if (r.status !== 0)
    return { error: `litestream restore exited ${r.status}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` };
  try {
    return { rows: countRows(out) };
  } catch (e) {
    return { error: errText(e) };
  }
}

// ---------------------------------------------------------------------------------------------- P1

interface P1Sample {
  run: number;
  variant: Variant;
  ok: boolean;
  error?: string;
  appSeconds?: number;
  appProcessSeconds?: number;
  txPerSecond?: number;
  /** baseline seconds of the same run / this run's seconds. */
  ratio?: number;
  startSeconds?: number;
  startedBy?: string;
  cpuDuringAppSeconds?: number;
  stopSeconds?: number;
  exitCode?: number | null;
  killed?: boolean;
  usage?: Usage;
  segmentFiles?: number;
  verify?: { expectedRows: number; rows?: number; error?: string; ok: boolean };
  log?: LogSummary;
}

interface Ctx {
  root: string;
  tmpRoot: string;
  timer: Timer;
  tx: number;
  p1SyncInterval: string;
  minCheckpointPageCount: number | undefined;
  verify: boolean;
  keep: boolean;
  /** --age: the replica's `age:` lines (undefined: no encryption). */
  ageLines: string[] | undefined;
}

async function p1Run(ctx: Ctx, run: number, variant: Variant): Promise<P1Sample> {
  const dir = mkdtempSync(join(ctx.tmpRoot, `p1-r${run}-${variant}-`));
  const dbPath = join(dir, 'db.sqlite');
  const replicaDir = join(dir, 'replica');
  createDb(dbPath);
  const app = writeApp(dir, ctx.root);
  const sample: P1Sample = { run, variant, ok: false };
  try {
    if (variant === 'baseline') {
      const r = await runApp(app, dbPath, ctx.tx);
      Object.assign(sample, { ok: true, appSeconds: r.seconds, appProcessSeconds: r.processSeconds, txPerSecond: ctx.tx / r.seconds });
      return sample;
    }
    const config = writeConfig(join(dir, 'litestream.yml'), {
      dbPath,
      replicaDir,
      syncInterval: ctx.p1SyncInterval,
      minCheckpointPageCount: ctx.minCheckpointPageCount,
      ageLines: ctx.ageLines,
    });
    const watcher = new SegmentWatcher(replicaDir);
    const rep = TimedReplicator.start(variant, ctx.root, config, ctx.timer, join(dir, 'time.txt'));
    try {
      const t0 = performance.now();
      sample.startedBy = await waitStarted(rep, watcher);
      sample.startSeconds = (performance.now() - t0) / 1000;
      const pid = rep.replicatorPid();
      const cpu0 = pid !== undefined ? procCpuSeconds(pid) : undefined;
      try {
        const r = await runApp(app, dbPath, ctx.tx);
        Object.assign(sample, { appSeconds: r.seconds, appProcessSeconds: r.processSeconds, txPerSecond: ctx.tx / r.seconds });
      } catch (e) {
        sample.error = `app failed while ${NAMES[variant]} replicated: ${errText(e)}`;
      }
      const cpu1 = pid !== undefined ? procCpuSeconds(pid) : undefined;
      if (cpu0 !== undefined && cpu1 !== undefined) sample.cpuDuringAppSeconds = cpu1 - cpu0;
      if (!rep.running && !sample.error) sample.error = `${NAMES[variant]} exited during the app's run:\n${rep.tail()}`;
      const stop = await rep.stop('SIGINT');
      Object.assign(sample, { stopSeconds: stop.stopSeconds, exitCode: stop.code, killed: stop.killed, usage: stop.usage });
      if (stop.killed && !sample.error) sample.error = `${NAMES[variant]} did not exit within 20 s of SIGINT (SIGKILLed)`;
    } catch (e) {
      await rep.kill();
      sample.error = errText(e);
    } finally {
      watcher.close();
      sample.segmentFiles = watcher.scan().size;
      watcher.close();
      sample.log = summarizeLog(rep);
    }
    if (ctx.verify && sample.appSeconds !== undefined) {
      const expectedRows = ctx.tx * ROWS_PER_TX;
      const v = verifyReplica(replicaDir, join(dir, 'restored.sqlite'), ctx.ageLines ? { config, dbPath } : undefined);
      sample.verify =
        'rows' in v ? { expectedRows, rows: v.rows, ok: v.rows === expectedRows } : { expectedRows, error: v.error, ok: false };
    }
    sample.ok = sample.error === undefined && sample.appSeconds !== undefined;
    return sample;
  } catch (e) {
    sample.error = errText(e);
    return sample;
  } finally {
    if (!ctx.keep) rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------- P2

interface P2Commit {
  i: number;
  /** Commit returned -> new segment file seen (ms); undefined if none appeared within the timeout. */
  fileLagMs?: number;
  /** Commit returned -> the replicator's "wal segment written" line read from its pipe (ms). */
  logLagMs?: number;
  segment?: string;
  gapMs: number;
}

interface P2Result {
  tool: Tool;
  ok: boolean;
  error?: string;
  commits: P2Commit[];
  missed: number;
  fileLagMs?: { p50: number; p90: number; max: number; mean: number; n: number };
  logLagMs?: { p50: number; p90: number; n: number };
  settleSeconds?: number;
  exitCode?: number | null;
  log?: LogSummary;
}

async function p2Run(ctx: Ctx, tool: Tool, commits: number): Promise<P2Result> {
  const dir = mkdtempSync(join(ctx.tmpRoot, `p2-${tool}-`));
  const dbPath = join(dir, 'db.sqlite');
  const replicaDir = join(dir, 'replica');
  createDb(dbPath);
  const config = writeConfig(join(dir, 'litestream.yml'), { dbPath, replicaDir, syncInterval: P2_SYNC_INTERVAL, ageLines: ctx.ageLines });
  const watcher = new SegmentWatcher(replicaDir);
  const rep = TimedReplicator.start(tool, ctx.root, config, ctx.timer, join(dir, 'time.txt'));
  const result: P2Result = { tool, ok: false, commits: [], missed: 0 };
  const commitTimes: { t0: number; mark: number }[] = [];
  let db: Database.Database | undefined;
  try {
    await waitStarted(rep, watcher);
    // Settle: whatever the replicator ships right after its snapshot is not a commit of ours.
    const s0 = performance.now();
    for (;;) {
      try {
        await watcher.waitForNew(watcher.scan(), 1500);
      } catch {
        break; // 1.5 s without a new segment
      }
      if (performance.now() - s0 > 20_000) throw new Error(`${NAMES[tool]} kept writing WAL segments with no writes for 20 s`);
    }
    result.settleSeconds = (performance.now() - s0) / 1000;

    db = new Database(dbPath);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    db.exec(SCHEMA);
    const ins = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    for (let i = 0; i < commits; i++) {
      const gapMs = 50 + Math.random() * 250;
      await sleep(gapMs);
      const before = watcher.scan();
      const mark = rep.lines.length;
      ins.run(`p2 commit ${i} `.padEnd(200, 'x'), i);
      const t0 = performance.now();
      commitTimes.push({ t0, mark });
      const c: P2Commit = { i, gapMs };
      try {
        const seen = await watcher.waitForNew(before, 10_000);
        c.fileLagMs = seen.t - t0;
        c.segment = seen.name;
      } catch {
        result.missed++;
      }
      result.commits.push(c);
      if (!rep.running) throw new Error(`${NAMES[tool]} exited during P2:\n${rep.tail()}`);
    }
    // Give the last log line a moment to arrive before matching lines to commits.
    await sleep(100);
    const stop = await rep.stop('SIGINT');
    result.exitCode = stop.code;
  } catch (e) {
    result.error = errText(e);
    await rep.kill();
  } finally {
    db?.close();
    watcher.close();
    result.log = summarizeLog(rep);
    if (!ctx.keep) rmSync(dir, { recursive: true, force: true });
  }
  // The log-line lag: the first "wal segment written" line read after each commit (and before the next).
  for (const [k, { t0, mark }] of commitTimes.entries()) {
    const next = commitTimes[k + 1]?.t0 ?? Infinity;
    const line = rep.lines.slice(mark).find((l) => l.text.includes('msg="wal segment written"') && l.t >= t0 && l.t < next);
    if (line && result.commits[k]) result.commits[k].logLagMs = line.t - t0;
  }
  const lags = result.commits.flatMap((c) => (c.fileLagMs !== undefined ? [c.fileLagMs] : []));
  if (lags.length > 0) {
    result.fileLagMs = {
      p50: percentile(lags, 0.5),
      p90: percentile(lags, 0.9),
      max: Math.max(...lags),
      mean: lags.reduce((a, b) => a + b, 0) / lags.length,
      n: lags.length,
    };
  }
  const logLags = result.commits.flatMap((c) => (c.logLagMs !== undefined ? [c.logLagMs] : []));
  if (logLags.length > 0) result.logLagMs = { p50: percentile(logLags, 0.5), p90: percentile(logLags, 0.9), n: logLags.length };
  result.ok = result.error === undefined && result.missed === 0 && result.commits.length === commits;
  return result;
}

// ------------------------------------------------------------------------------------------ report

/** Error/warning lines either tool logged, grouped by message (timestamps and temp paths removed). */
function loggedErrors(p1: P1Sample[], p2: P2Result[]): string[] {
  const groups = new Map<string, string[]>();
  const add = (where: string, tool: Tool, lines: string[]) => {
    for (const line of new Set(lines.map((l) => l.replace(/time=\S+ /g, '').replace(/\/tmp\/stn-bench-replicate-[^\s"]+/g, '<tmp>')))) {
      const key = `${NAMES[tool]} logged: ${line}`;
      groups.set(key, [...(groups.get(key) ?? []), where]);
    }
  };
  for (const s of p1) if (s.variant !== 'baseline' && s.log) add(`P1 run ${s.run + 1}`, s.variant, s.log.warnOrError);
  for (const r of p2) if (r.log) add('P2', r.tool, r.log.warnOrError);
  return [...groups].map(([k, where]) => `${k}  [${where.join(', ')}]`);
}

const f = (x: number | undefined, d = 2) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(d));
/** "1.23x", or "n/a" when either side is missing or zero. */
const rx = (a: number | undefined, b: number | undefined) =>
  a !== undefined && b !== undefined && Number.isFinite(a / b) && b !== 0 ? `${(a / b).toFixed(2)}x` : 'n/a';
const verdict = (ok: boolean | undefined) => (ok === undefined ? '—' : ok ? 'PASS' : 'FAIL');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      tx: { type: 'string', default: '20000' },
      commits: { type: 'string', default: '30' },
      'p1-sync-interval': { type: 'string', default: '1s' },
      'min-checkpoint-page-count': { type: 'string' },
      timer: { type: 'string', default: 'auto' },
      'skip-verify': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      age: { type: 'boolean', default: false },
    },
  });
  const posInt = (name: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, not ${v}`);
    return n;
  };
  const runs = posInt('runs', values.runs);
  const tx = posInt('tx', values.tx);
  const commits = posInt('commits', values.commits);
  const mcpc =
    values['min-checkpoint-page-count'] !== undefined
      ? posInt('min-checkpoint-page-count', values['min-checkpoint-page-count'])
      : undefined;
  const root = findRoot();
  const outDir = join(root, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  const tmpRoot = mkdtempSync(join(tmpdir(), 'stn-bench-replicate-'));
  const ctx: Ctx = {
    root,
    tmpRoot,
    timer: pickTimer(values.timer),
    tx,
    p1SyncInterval: values['p1-sync-interval'],
    minCheckpointPageCount: mcpc,
    verify: !values['skip-verify'],
    keep: values.keep,
    ageLines: values.age ? ageConfigLines(await newAgeKeys()) : undefined,
  };
  const log = (s: string) => console.log(s);
  const started = performance.now();
  const lsVersion = litestreamVersion();
  // Our side is whatever src/ was built from: name the commit (and whether src/ had local changes).
  const git = (args: string[]) => spawnSync('git', args, { cwd: root, encoding: 'utf8' }).stdout?.trim() ?? '';
  const commit = `${git(['rev-parse', '--short', 'HEAD']) || 'unknown'}${git(['status', '--porcelain', '--', 'src']) ? '+dirty src' : ''}`;
  log(`bench:replicate  litestream ${lsVersion}  node ${process.version}  ${cpus().length} CPUs  timer ${ctx.timer}  tmp ${tmpRoot}`);
  log(
    `P1/P4/P5: ${runs} run(s) x ${tx} tx (sync-interval ${ctx.p1SyncInterval}${mcpc ? `, min-checkpoint-page-count ${mcpc}` : ''}); P2: ${commits} commits per tool (sync-interval ${P2_SYNC_INTERVAL})${ctx.ageLines ? '; age: every object encrypted (both tools)' : ''}`,
  );

  // Warm-up (untimed): page cache for node, better-sqlite3 and both binaries.
  {
    const dir = mkdtempSync(join(tmpRoot, 'warm-'));
    createDb(join(dir, 'db.sqlite'));
    await runApp(writeApp(dir, root), join(dir, 'db.sqlite'), 200);
    spawnSync(process.execPath, [join(root, 'bin', 'stn-replicate.js'), 'version'], { env: cleanEnv() });
    rmSync(dir, { recursive: true, force: true });
  }

  // P1 (+P4/P5): each run does all three variants back to back, rotating who goes first.
  const p1: P1Sample[] = [];
  const variants: Variant[] = ['baseline', 'ours', 'litestream'];
  for (let run = 0; run < runs; run++) {
    const order = [...variants.slice(run % 3), ...variants.slice(0, run % 3)];
    const inRun: P1Sample[] = [];
    for (const v of order) {
      const s = await p1Run(ctx, run, v);
      inRun.push(s);
      p1.push(s);
      const extra =
        v === 'baseline'
          ? ''
          : `  cpu ${f(s.usage?.cpuSeconds)} s  rss ${f(s.usage?.maxRssMiB, 1)} MiB  segments ${s.segmentFiles ?? '—'}  exit ${s.exitCode ?? '—'}` +
            (s.verify ? `  replica rows ${s.verify.rows ?? s.verify.error} / ${s.verify.expectedRows}` : '');
      log(
        `P1 run ${run + 1}/${runs}  ${NAMES[v].padEnd(20)} ${s.appSeconds !== undefined ? `app ${f(s.appSeconds)} s (${f(s.txPerSecond, 0)} tx/s)` : 'app —'}${extra}${s.error ? `\n    ERROR: ${s.error.split('\n').join('\n    ')}` : ''}`,
      );
    }
    const base = inRun.find((s) => s.variant === 'baseline');
    for (const s of inRun) if (s.variant !== 'baseline' && base?.appSeconds && s.appSeconds) s.ratio = base.appSeconds / s.appSeconds;
  }

  // P2: once per tool.
  const p2: P2Result[] = [];
  for (const tool of ['ours', 'litestream'] as Tool[]) {
    log(`P2 ${NAMES[tool]}: ${commits} commits ...`);
    const r = await p2Run(ctx, tool, commits);
    p2.push(r);
    log(
      `P2 ${NAMES[tool].padEnd(20)} p50 ${f(r.fileLagMs?.p50, 1)} ms  p90 ${f(r.fileLagMs?.p90, 1)} ms  max ${f(r.fileLagMs?.max, 1)} ms  missed ${r.missed}` +
        (r.error ? `\n    ERROR: ${r.error.split('\n').join('\n    ')}` : ''),
    );
  }
  if (!ctx.keep) rmSync(tmpRoot, { recursive: true, force: true });
  const totalSeconds = (performance.now() - started) / 1000;

  // Summaries.
  const of = (v: Variant) => p1.filter((s) => s.variant === v);
  const okOf = (v: Variant) => of(v).filter((s) => s.ok);
  const med = (v: Variant, pick: (s: P1Sample) => number | undefined) =>
    median(okOf(v).flatMap((s) => (pick(s) !== undefined ? [pick(s)!] : [])));
  const summary = {
    p1: Object.fromEntries(
      variants.map((v) => [
        v,
        {
          runsOk: okOf(v).length,
          runs: of(v).length,
          medianAppSeconds: med(v, (s) => s.appSeconds),
          medianTxPerSecond: med(v, (s) => s.txPerSecond),
          /** Headline: median baseline time / median replicated time (robust to one noisy baseline). */
          ratio: v === 'baseline' ? 1 : med('baseline', (s) => s.appSeconds) / med(v, (s) => s.appSeconds),
          medianPerRunRatio: v === 'baseline' ? 1 : med(v, (s) => s.ratio),
          ratios: of(v).map((s) => s.ratio ?? null),
        },
      ]),
    ),
    p4: Object.fromEntries(
      (['ours', 'litestream'] as Tool[]).map((v) => [
        v,
        {
          medianCpuSeconds: med(v, (s) => s.usage?.cpuSeconds),
          medianUserSeconds: med(v, (s) => s.usage?.userSeconds),
          medianSysSeconds: med(v, (s) => s.usage?.sysSeconds),
          medianCpuDuringAppSeconds: med(v, (s) => s.cpuDuringAppSeconds),
          medianStopSeconds: med(v, (s) => s.stopSeconds),
          medianStartSeconds: med(v, (s) => s.startSeconds),
        },
      ]),
    ),
    p5: Object.fromEntries((['ours', 'litestream'] as Tool[]).map((v) => [v, { medianMaxRssMiB: med(v, (s) => s.usage?.maxRssMiB) }])),
    p2: Object.fromEntries(
      p2.map((r) => [r.tool, { p50Ms: r.fileLagMs?.p50, p90Ms: r.fileLagMs?.p90, maxMs: r.fileLagMs?.max, missed: r.missed, ok: r.ok }]),
    ),
  };

  const o = summary.p1.ours!;
  const l = summary.p1.litestream!;
  const b = summary.p1.baseline!;
  const p2o = p2.find((r) => r.tool === 'ours');
  const p2l = p2.find((r) => r.tool === 'litestream');
  const cpuO = summary.p4.ours!;
  const cpuL = summary.p4.litestream!;
  const rssO = summary.p5.ours!.medianMaxRssMiB;
  const rssL = summary.p5.litestream!.medianMaxRssMiB;
  const perRun = (v: Variant) =>
    of(v)
      .map((s) => (s.ratio !== undefined ? f(s.ratio) : s.ok ? '—' : 'ERR'))
      .join(' ');
  const verifyCol = (v: Variant) => {
    const vs = of(v).filter((s) => s.verify);
    return vs.length === 0 ? '—' : `${vs.filter((s) => s.verify!.ok).length}/${vs.length} ok`;
  };
  const ratioOk = Number.isFinite(o.ratio) ? o.ratio >= TARGET.p1Ratio : undefined;
  const p50Ok = p2o?.fileLagMs ? p2o.fileLagMs.p50 <= TARGET.p2p50Ms && p2o.missed === 0 : undefined;
  const p90Ok = p2o?.fileLagMs ? p2o.fileLagMs.p90 <= TARGET.p2p90Ms && p2o.missed === 0 : undefined;

  const text = [
    '',
    `stn-replicate vs litestream ${lsVersion} — replicate benchmark (${new Date().toISOString()})`,
    `stn-replicate built from ${commit}; ` +
      `host: ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? '?'}), node ${process.version}, timer ${ctx.timer}; total ${f(totalSeconds, 0)} s`,
    '',
    `P1  app write throughput, replicated / no replicator  (${runs} run(s) x ${tx} tx x ${ROWS_PER_TX} rows x 200 B, synchronous=FULL; sync-interval ${ctx.p1SyncInterval})`,
    table(
      ['', 'median app s', 'tx/s', 'ratio', 'per-run ratios (median)', 'replica check', 'target', 'ref (brief)', ''],
      [
        [
          'no replicator',
          f(b.medianAppSeconds),
          f(b.medianTxPerSecond, 0),
          '1.00',
          of('baseline')
            .map((s) => f(s.appSeconds))
            .join(' ') + ' s',
          '',
          '',
          '',
          '',
        ],
        [
          'stn-replicate',
          f(o.medianAppSeconds),
          f(o.medianTxPerSecond, 0),
          f(o.ratio),
          `${perRun('ours')} (${f(o.medianPerRunRatio)})`,
          verifyCol('ours'),
          `>= ${TARGET.p1Ratio.toFixed(2)}`,
          '',
          of('ours').some((s) => s.verify && !s.verify.ok) ? `${verdict(ratioOk)} but INVALID: replica check failed` : verdict(ratioOk),
        ],
        [
          'litestream',
          f(l.medianAppSeconds),
          f(l.medianTxPerSecond, 0),
          f(l.ratio),
          `${perRun('litestream')} (${f(l.medianPerRunRatio)})`,
          verifyCol('litestream'),
          '',
          REF.p1Ratio,
          '',
        ],
      ],
    ),
    `  ratio = median no-replicator app time / median replicated app time; per run: that run's baseline / its time`,
    `  ours / litestream throughput: ${rx(o.ratio, l.ratio)}`,
    '',
    `P2  commit-to-replica lag, new WAL segment file in the replica  (sync-interval ${P2_SYNC_INTERVAL}, monitor-interval default; ${commits} commits 50-300 ms apart)`,
    table(
      ['', 'p50 ms', 'p90 ms', 'max ms', 'mean ms', 'missed', 'log-line p50/p90 ms', 'target', 'ref (brief)', ''],
      [
        [
          'stn-replicate',
          f(p2o?.fileLagMs?.p50, 1),
          f(p2o?.fileLagMs?.p90, 1),
          f(p2o?.fileLagMs?.max, 1),
          f(p2o?.fileLagMs?.mean, 1),
          String(p2o?.missed ?? '—'),
          `${f(p2o?.logLagMs?.p50, 1)} / ${f(p2o?.logLagMs?.p90, 1)}`,
          `p50 <= ${TARGET.p2p50Ms}, p90 <= ${TARGET.p2p90Ms}`,
          '',
          `${verdict(p50Ok)}/${verdict(p90Ok)}`,
        ],
        [
          'litestream',
          f(p2l?.fileLagMs?.p50, 1),
          f(p2l?.fileLagMs?.p90, 1),
          f(p2l?.fileLagMs?.max, 1),
          f(p2l?.fileLagMs?.mean, 1),
          String(p2l?.missed ?? '—'),
          `${f(p2l?.logLagMs?.p50, 1)} / ${f(p2l?.logLagMs?.p90, 1)}`,
          '',
          `p50 ${REF.p2p50}`,
          '',
        ],
      ],
    ),
    ...(p2.some((r) => !r.logLagMs)
      ? [`  log-line lag "—": that tool logged no "wal segment written" line at the default (info) level`]
      : []),
    '',
    `P4  replicator CPU, user+sys over its whole life in a P1 run (start, snapshot, app's run, final sync), median`,
    table(
      ['', 'cpu s', 'user s', 'sys s', 'during app s (/proc)', 'start s', 'SIGINT->exit s', 'ref (brief)'],
      [
        [
          'stn-replicate',
          f(cpuO.medianCpuSeconds),
          f(cpuO.medianUserSeconds),
          f(cpuO.medianSysSeconds),
          f(cpuO.medianCpuDuringAppSeconds),
          f(cpuO.medianStartSeconds),
          f(cpuO.medianStopSeconds),
          '',
        ],
        [
          'litestream',
          f(cpuL.medianCpuSeconds),
          f(cpuL.medianUserSeconds),
          f(cpuL.medianSysSeconds),
          f(cpuL.medianCpuDuringAppSeconds),
          f(cpuL.medianStartSeconds),
          f(cpuL.medianStopSeconds),
          REF.cpu,
        ],
      ],
    ),
    `  ours / litestream: ${rx(cpuO.medianCpuSeconds, cpuL.medianCpuSeconds)} (whole life), ${rx(cpuO.medianCpuDuringAppSeconds, cpuL.medianCpuDuringAppSeconds)} (during the app's run)`,
    `  start s = spawn -> "snapshot written"; SIGINT->exit s = shutdown incl. final sync (both in cpu s)`,
    '',
    `P5  replicator peak RSS in a P1 run, median`,
    table(
      ['', 'MiB', 'ref (brief)'],
      [
        ['stn-replicate', f(rssO, 1), ''],
        ['litestream', f(rssL, 1), REF.rss],
      ],
    ),
    `  ours / litestream: ${rx(rssO, rssL)}`,
    '',
    'Event-loop delay: not applicable (the app is a separate process from the replicator).',
  ];
  const failures = [
    ...p1
      .filter((s) => !s.ok || (s.verify && !s.verify.ok))
      .map(
        (s) =>
          `P1 run ${s.run + 1} ${NAMES[s.variant]}: ${s.error ?? (s.verify?.error !== undefined ? `replica check failed (litestream restore of its replica): ${s.verify.error}` : `replica check: restored ${s.verify?.rows} rows, expected ${s.verify?.expectedRows}`)}`,
      ),
    ...p2.filter((r) => !r.ok).map((r) => `P2 ${NAMES[r.tool]}: ${r.error ?? `${r.missed} commit(s) without a new segment within 10 s`}`),
    ...loggedErrors(p1, p2),
  ];
  if (failures.length > 0)
    text.push('', 'PROBLEMS (and error lines either tool logged):', ...failures.map((x) => `  - ${x.split('\n').join('\n    ')}`));

  const createdAt = new Date().toISOString();
  const report = {
    createdAt,
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model.trim() ?? 'unknown', node: process.version },
    litestream: lsVersion,
    commit,
    timer: ctx.timer,
    options: {
      runs,
      tx,
      commits,
      p1SyncInterval: ctx.p1SyncInterval,
      p2SyncInterval: P2_SYNC_INTERVAL,
      minCheckpointPageCount: mcpc ?? null,
      verify: ctx.verify,
      age: ctx.ageLines !== undefined,
    },
    targets: TARGET,
    referenceLitestream: REF,
    totalSeconds,
    summary,
    p1,
    p2,
  };
  const jsonPath = join(outDir, `replicate${ctx.ageLines ? '-age' : ''}-${createdAt.replace(/[:.]/g, '-')}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  text.push('', `JSON: ${relative(root, jsonPath)}`);
  log(text.join('\n'));
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
