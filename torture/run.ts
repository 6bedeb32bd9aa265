/**
 * `npm run torture -- --rounds N --seed S --seconds T --replicator ours|litestream|CMD --backends file,s3,abs --keep`
 *
 * Runs rounds of the torture harness against a replicator, starting the S3 server (fauxqs, in process)
 * and Azurite itself when those backends are asked for; prints each failing round's seed and the
 * command that replays it, one summary line at the end, and writes the summary as JSON. Exits non-zero
 * if any round failed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startAbsServer, type AbsServer } from '../bench/lib/abs-server.js';
import { cleanEnv, findRoot, litestreamBin } from '../bench/lib/shared.js';
import { startS3Server, type S3Server } from '../bench/lib/s3-server.js';
import { runRound } from './harness.js';
import { mixSeed, Rng } from './random.js';
import { resolveReplicator } from './replicator.js';
import type { RoundResult } from './round-result.js';
import { BACKENDS, type Backend } from './store.js';
import { summarize, summaryLine } from './summary.js';
import { missingTools } from './tools.js';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    seed: { type: 'string' },
    seconds: { type: 'string', default: '20' },
    replicator: { type: 'string', default: 'ours' },
    backends: { type: 'string', default: 'file,s3,abs' },
    keep: { type: 'boolean', default: false },
    dir: { type: 'string' },
    json: { type: 'string' },
    'calm-checkpoints': { type: 'boolean', default: false },
    'max-checkpoints-per-second': { type: 'string' },
  },
});

const seed = args.seed !== undefined ? Number(args.seed) >>> 0 : Math.floor(Math.random() * 2 ** 31) + 1;
const rounds = Number(args.rounds);
const seconds = Number(args.seconds);
const backends = args.backends.split(',').map((b) => b.trim()) as Backend[];
for (const b of backends) if (!BACKENDS.includes(b)) throw new Error(`unknown backend ${b} (one of ${BACKENDS.join(', ')})`);
const missing = missingTools();
if (missing.length > 0) {
  process.stderr.write(`torture: missing ${missing.join(', ')}; run scripts/install-test-tools.sh (as root) first\n`);
  process.exit(2);
}

const root = findRoot();
const tools = { nodePath: process.execPath, oursBin: join(root, 'bin', 'stn-replicate.js'), litestreamBin: litestreamBin() };
const replicator = resolveReplicator(args.replicator, tools);
const rootDir = resolve(args.dir ?? join(tmpdir(), `stn-torture-${replicator.name}-${seed}`));
mkdirSync(rootDir, { recursive: true });
const jsonPath = resolve(args.json ?? join(rootDir, 'summary.json'));
const env = cleanEnv({ LANG: 'C' });

/** Round i: seed (round 0 has the run's seed, so `--seed X --rounds 1` replays any round) and backend. */
function roundOf(i: number): { seed: number; backend: Backend } {
  const s = i === 0 ? seed : mixSeed(seed, i);
  // The first rounds cover every backend asked for; later ones mostly file replicas.
  const backend =
    i < backends.length ? backends[i]! : new Rng(s).fork('backend').weighted(backends.map((b) => [b, b === 'file' ? 3 : 1] as const));
  return { seed: s, backend };
}

function replayCommand(r: RoundResult): string {
  const extra = [
    args['calm-checkpoints'] ? ' --calm-checkpoints' : '',
    args['max-checkpoints-per-second'] ? ` --max-checkpoints-per-second ${args['max-checkpoints-per-second']}` : '',
  ].join('');
  return `npm run torture -- --replicator '${args.replicator}' --seed ${r.seed} --rounds 1 --backends ${r.backend} --seconds ${seconds}${extra} --keep`;
}

// The AWS SDK (used here only to empty the round's bucket) warns about Node 20 on every run.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const abort = new AbortController();
let servers: { s3?: S3Server; abs?: AbsServer } = {};
let signals = 0;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (++signals > 1) process.exit(130); // children die with us (pdeathsig)
    process.stderr.write(`torture: ${sig}, cleaning up the current round\n`);
    abort.abort();
    setTimeout(() => process.exit(130), 30_000).unref(); // a cleanup that hangs must not keep the run alive
  });
}

const t0 = performance.now();
const results: RoundResult[] = [];
try {
  const [s3, abs] = await Promise.all([
    backends.includes('s3') ? startS3Server() : undefined,
    backends.includes('abs') ? startAbsServer({ dieWithParent: true }) : undefined,
  ]);
  servers = { ...(s3 ? { s3 } : {}), ...(abs ? { abs } : {}) };
  process.stdout.write(
    `torture: replicator=${replicator.name} (${[replicator.cmd, ...replicator.args].join(' ')}) seed=${seed} rounds=${rounds} seconds=${seconds} dir=${rootDir}\n`,
  );
  for (let i = 0; i < rounds && !abort.signal.aborted; i++) {
    const { seed: roundSeed, backend } = roundOf(i);
    const r = await runRound(
      { index: i, seed: roundSeed, backend, seconds },
      {
        rootDir,
        replicator,
        tools,
        appJs: join(dirname(fileURLToPath(import.meta.url)), 'app.js'),
        servers: { ...(s3 ? { s3Endpoint: s3.endpoint } : {}), ...(abs ? { absEndpoint: abs.endpoint } : {}) },
        env,
        asRoot: process.getuid?.() === 0,
        keep: args.keep,
        plan: { calmCheckpoints: args['calm-checkpoints'] },
        ...(args['max-checkpoints-per-second'] ? { maxCheckpointsPerSecond: Number(args['max-checkpoints-per-second']) } : {}),
        log: (l) => process.stdout.write(`${l}\n`),
        signal: abort.signal,
      },
    );
    results.push(r);
    const gens = r.generations.logged.length;
    process.stdout.write(
      `round ${i} ${r.backend} seed=${r.seed} ${r.ok ? 'ok' : 'FAILED'} ${(r.durationMs / 1000).toFixed(1)}s latest=${r.latest.ours.status}/${r.latest.litestream.status} ` +
        `pitr=${r.pitr.map((p) => `${p.ours.status}/${p.litestream.status}`).join(',') || '-'} generations=${gens} (unexpected ${r.generations.unexpected}) ` +
        `checkpoints/s peak=${r.checkpoints.peakPerSecond} kills=${r.replicatorKills}\n`,
    );
    if (!r.ok) {
      for (const f of r.failures) process.stdout.write(`  - ${f.split('\n')[0]}\n`);
      process.stdout.write(`  kept: ${r.dir}\n  replay: ${replayCommand(r)}\n`);
    }
  }
} finally {
  await Promise.all([servers.s3?.stop(), servers.abs?.stop()]);
}
const summary = summarize(results, replicator.name, seed, (performance.now() - t0) / 1000);
writeFileSync(jsonPath, `${JSON.stringify({ summary, line: summaryLine(summary), rounds: results }, null, 2)}\n`);
process.stdout.write(`${summaryLine(summary)}\n`);
process.stdout.write(`torture: summary JSON ${jsonPath}\n`);
process.exitCode = summary.failedRounds > 0 || abort.signal.aborted ? 1 : 0;
