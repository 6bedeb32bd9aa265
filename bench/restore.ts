/**
 * `npm run bench:restore`: restore time and peak memory of stn-replicate against the real Litestream
 * v0.3.13 on the same ~200 MB replica (written by Litestream itself), in one run, alternating.
 *
 *   npm run bench:restore -- [--runs N] [--rebuild] [--timer auto|gnu-time|python] [--only-litestream]
 *
 *   --runs N             timed runs per variant after one untimed warm-up (default 3)
 *   --rebuild            rebuild the cached fixture in bench/out/restore-fixture/
 *   --timer              how to measure the child: GNU time (default when present) or Python's resource
 *   --only-litestream    (or STN_BENCH_ONLY_LITESTREAM=1) stand Litestream in for our CLI, to check the
 *                        harness itself while our restore is broken or unbuilt
 *
 * Variants: our CLI with its default post-restore PRAGMA quick_check, our CLI with
 * `-integrity-check none` (Litestream checks nothing, so this is the like-for-like one), Litestream,
 * and `cp` of the source database as the floor no restore can beat.
 * Prints the report and writes it, with every sample, to bench/out/restore-<timestamp>.json.
 */
import { cpus } from 'node:os';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { contentDigest } from './lib/digest.js';
import { buildFixture, fixturePaths, loadFixture, type Manifest } from './lib/fixture.js';
import { cleanEnv, litestreamBin, litestreamVersion } from './lib/litestream.js';
import { measure, pickTimer, run, type Command, type Sample } from './lib/measure.js';
import { formatReport, ratios, stats, type Report, type Role, type VariantResult } from './lib/report.js';

interface Variant {
  name: string;
  role: Role;
  /** The command that restores (or copies) to `out`. */
  command(out: string): Command;
}

/** The repository root: the nearest directory above this file that has the project's package.json. */
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'bin', 'stn-replicate.js'))) {
    if (dirname(dir) === dir) throw new Error('cannot find the stn-replicate repository root');
    dir = dirname(dir);
  }
  return dir;
}

/** A fresh, empty directory: whatever a restore leaves (OUT-wal, OUT-shm, OUT.tmp…) goes with it. */
function resetDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
}

function variants(root: string, paths: ReturnType<typeof fixturePaths>, onlyLitestream: boolean): Variant[] {
  const url = `file://${paths.replica}`;
  const litestream = (out: string): Command => ({ cmd: litestreamBin(), args: ['restore', '-o', out, url] });
  const ours = (extra: string[]) => (out: string): Command =>
    onlyLitestream ? litestream(out) : { cmd: process.execPath, args: [join(root, 'bin', 'stn-replicate.js'), 'restore', ...extra, '-o', out, url] };
  return [
    { name: 'stn-replicate', role: 'ours', command: ours([]) },
    { name: 'litestream v0.3.13', role: 'litestream', command: litestream },
    { name: 'stn-replicate -integrity-check none', role: 'ours', command: ours(['-integrity-check', 'none']) },
    { name: 'cp (floor)', role: 'floor', command: (out) => ({ cmd: 'cp', args: [paths.db, out] }) },
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      rebuild: { type: 'boolean', default: false },
      timer: { type: 'string', default: 'auto' },
      'only-litestream': { type: 'boolean', default: false },
    },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, not ${values.runs}`);
  const onlyLitestream = values['only-litestream'] || process.env.STN_BENCH_ONLY_LITESTREAM === '1';
  const timer = pickTimer(values.timer);
  const env = cleanEnv();

  const root = findRoot();
  const outDir = join(root, 'bench', 'out');
  const paths = fixturePaths(join(outDir, 'restore-fixture'));
  const work = join(outDir, 'restore-work');
  const log = (s: string) => console.log(s);

  // 1. The fixture: cached unless --rebuild or the cache is incomplete/changed.
  let manifest: Manifest;
  let reused = false;
  const cached = values.rebuild ? '--rebuild' : loadFixture(paths);
  if (typeof cached === 'string') {
    log(`fixture: ${cached}`);
    manifest = await buildFixture(paths, log);
  } else {
    manifest = cached;
    reused = true;
    log(`fixture: reusing ${relative(root, paths.dir)} (built ${manifest.builtAt}; --rebuild to redo)`);
  }

  // 2. Warm-ups, which double as the correctness check: every restore variant's output must have the
  //    source's content (hence the same content as each other). The source is re-read rather than
  //    trusted from the manifest, so a changed cache cannot pass.
  const all = variants(root, paths, onlyLitestream);
  const source = contentDigest(paths.db);
  if (source.sha256 !== manifest.db.digest.sha256) throw new Error('the cached source database changed since the build: run with --rebuild');
  resetDir(work);
  const checked: string[] = [];
  for (const [i, v] of all.entries()) {
    const out = join(work, `warm-${i}`, 'db');
    mkdirSync(dirname(out), { recursive: true });
    log(`warm-up + check: ${v.name}`);
    try {
      run(v.command(out), env);
    } catch (e) {
      const hint = v.role === 'ours' ? '\n(is our CLI built and working? STN_BENCH_ONLY_LITESTREAM=1 checks the harness alone)' : '';
      throw new Error(`${(e as Error).message}${hint}`);
    }
    if (v.role === 'floor') continue;
    const got = contentDigest(out);
    if (got.sha256 !== source.sha256 || got.rows !== source.rows) {
      throw new Error(`${v.name} restored different content: sha256 ${got.sha256} (${got.rows} rows), source ${source.sha256} (${source.rows} rows)`);
    }
    checked.push(v.name);
  }

  // 3. Timed runs. Adjacent variants share conditions, and reversing the order every other round
  //    cancels "who runs right after whom" (e.g. the previous run's 200 MB still being written back).
  //    `sync` before each run flushes that write-back outside the timed region.
  const samples = new Map<Variant, Sample[]>(all.map((v) => [v, []]));
  const out = join(work, 'db');
  for (let round = 0; round < runs; round++) {
    for (const v of round % 2 ? [...all].reverse() : all) {
      resetDir(work);
      run({ cmd: 'sync', args: [] }, env);
      const s = measure(timer, v.command(out), env);
      if (!existsSync(out)) throw new Error(`${v.name} exited 0 but wrote no ${out}`);
      samples.get(v)!.push(s);
      log(`round ${round + 1}/${runs}  ${v.name.padEnd(36)} ${s.seconds.toFixed(2)} s  ${s.rssMiB.toFixed(0)} MiB`);
    }
  }
  rmSync(work, { recursive: true, force: true });
  // Peak RSS counts what the child held before exec (a fork of the timer process): tiny for GNU time,
  // ~10 MiB for python3. Measuring `true` shows that floor.
  const timerFloor = measure(timer, { cmd: 'true', args: [] }, env);

  // 4. Report.
  const results: VariantResult[] = all.map((v) => {
    const ss = samples.get(v)!;
    const c = v.command('OUT');
    return {
      name: v.name,
      role: v.role,
      command: [c.cmd, ...c.args].map((a) => (a.startsWith(root) ? relative(root, a) || '.' : a)).join(' '),
      samples: ss,
      seconds: stats(ss.map((s) => s.seconds)),
      rssMiB: stats(ss.map((s) => s.rssMiB)),
    };
  });
  const { files: _files, ...replica } = manifest.replica;
  const report: Report = {
    createdAt: new Date().toISOString(),
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model.trim() ?? 'unknown', node: process.version },
    litestream: litestreamVersion(),
    timer,
    timerFloorRssMiB: timerFloor.rssMiB,
    runs,
    onlyLitestream,
    fixture: { dir: relative(root, paths.dir), reused, builtAt: manifest.builtAt, buildSeconds: manifest.buildSeconds, db: manifest.db, replica },
    correctness: { sourceSha256: source.sha256, rows: source.rows, checked },
    variants: results,
    ratios: ratios(results),
  };
  const jsonPath = join(outDir, `restore-${report.createdAt.replace(/[:.]/g, '-')}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  log(`\n${formatReport(report)}\n\nJSON: ${relative(root, jsonPath)}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
