/**
 * `npm run bench:restore`: restore time and peak memory of stn-replicate against the real Litestream
 * v0.3.13 on the same ~200 MB replica (written by Litestream itself), in one run, alternating.
 *
 *   npm run bench:restore -- [--runs N] [--backend file|s3] [--fixture large|huge|long-history|small]
 *                            [--latency-ms N] [--age] [--rebuild] [--timer auto|gnu-time|python] [--only-litestream]
 *
 *   --runs N             timed runs per variant after one untimed warm-up (default 3)
 *   --backend s3         restore from a local S3 server (fauxqs, in a child process on 127.0.0.1) instead
 *                        of the file replica: the same objects are copied into a bucket (and read back
 *                        to check them), and both tools read it through the same litestream.yml
 *   --fixture            large (default): ~200 MB, one snapshot and ~7 WAL indexes; huge: the same at
 *                        ~1 GB; long-history: a 4 MiB snapshot and ~1,150 small WAL segments; small: ~10 MB
 *                        (a quick check that the harness runs, not a measurement)
 *   --latency-ms N       with --backend s3, hold every request back N ms (a proxy in the server's
 *                        process), as a store across a network does (default 0; 20 for long-history)
 *   --age                restore an age-encrypted replica: the fixture's objects encrypted to a key pair made
 *                        for the run (as Litestream stores them with `age:`: LZ4, then age), read by both
 *                        tools through a litestream.yml that holds the keys; compare with a run without it
 *   --rebuild            rebuild the cached fixture in bench/out/restore-fixture[-<fixture>]/
 *   --timer              how to measure the child: GNU time (default when present) or Python's resource
 *   --only-litestream    (or STN_BENCH_ONLY_LITESTREAM=1) stand Litestream in for our CLI, to check the
 *                        harness itself while our restore is broken or unbuilt
 *
 * Variants: our CLI with its default post-restore PRAGMA quick_check, our CLI with
 * `-integrity-check none` (Litestream checks nothing, so this is the like-for-like one), Litestream,
 * `cp` of the source database as the floor no restore can beat, and (file replica, one snapshot) the least
 * a restore in Node does: start Node, decode the snapshot with liblz4 on one thread, write it, fsync
 * (lib/node-floor-restore.ts; no WAL, no checks: a lower bound, not a restore), then the same with the
 * WAL segments applied, without and with SQLite's frame checks (the least a whole restore in Node does; their
 * output is checked like a restore's). With --backend s3 the
 * same floor reads the snapshot with one GetObject through the AWS SDK, loaded as a restore loads it.
 * With --backend s3 the server also counts the requests each restore made.
 * Prints the report and writes it, with every sample, to bench/out/restore[-s3]-<timestamp>.json.
 */
import { cpus } from 'node:os';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { contentDigest } from './lib/digest.js';
import { ageConfigLines, encryptReplica, newAgeKeys, type AgeKeys } from './lib/age-replica.js';
import { buildFixture, fixturePaths, loadFixture, PROFILES, replicaStats, type FixtureProfile, type Manifest } from './lib/fixture.js';
import { measure, run, type Command, type Sample } from './lib/measure.js';
import { formatReport, ratios, stats, type Report, type Role, type S3Info, type VariantResult } from './lib/report.js';
import { S3ServerChild } from './lib/s3-child.js';
import { createBucket } from './lib/s3-server.js';
import { CREDENTIALS, s3Config, uploadReplica, verifyReplica, type S3Target } from './lib/s3-replica.js';
import { totalOf, type KindCounts } from './lib/s3-requests.js';
import { cleanEnv, findRoot, litestreamBin, litestreamVersion, pickTimer } from './lib/shared.js';

interface Variant {
  name: string;
  role: Role;
  /** A floor whose output is a restored database: its content is checked like a restore's. */
  restores?: boolean;
  /** The command that restores (or copies) to `out`. */
  command(out: string): Command;
}

/** A fresh, empty directory: whatever a restore leaves (OUT-wal, OUT-shm, OUT.tmp…) goes with it. */
function resetDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
}

/**
 * `source`: the trailing restore arguments that name the replica, the same for both tools: a file URL,
 * or `-config <yml> <db path>` for the S3 replica.
 */
function variants(
  root: string,
  paths: ReturnType<typeof fixturePaths>,
  source: string[],
  onlyLitestream: boolean,
  snapshotPath: string | undefined,
  s3Snapshot: { endpoint: string; bucket: string; key: string } | undefined,
): Variant[] {
  const litestream = (out: string): Command => ({ cmd: litestreamBin(), args: ['restore', '-o', out, ...source] });
  const ours =
    (extra: string[]) =>
    (out: string): Command =>
      onlyLitestream
        ? litestream(out)
        : { cmd: process.execPath, args: [join(root, 'bin', 'stn-replicate.js'), 'restore', ...extra, '-o', out, ...source] };
  return [
    { name: 'stn-replicate', role: 'ours', command: ours([]) },
    { name: 'litestream v0.3.13', role: 'litestream', command: litestream },
    { name: 'stn-replicate -integrity-check none', role: 'ours', command: ours(['-integrity-check', 'none']) },
    { name: 'cp (floor)', role: 'floor', command: (out) => ({ cmd: 'cp', args: [paths.db, out] }) },
    ...(snapshotPath === undefined
      ? []
      : [
          {
            name: 'node: snapshot decoded and written (floor)',
            role: 'floor' as const,
            command: (out: string): Command => ({
              cmd: process.execPath,
              args: [join(root, 'dist', 'bench', 'lib', 'node-floor-restore.js'), snapshotPath, out],
            }),
          },
          // The same with the WAL applied, then with SQLite's frame checks too: the least a whole restore
          // in Node does, and the least one that keeps the checks a restore must not skip.
          ...[false, true].map((check) => ({
            name: check ? 'node: + WAL, frames checked (floor)' : 'node: + WAL applied (floor)',
            role: 'floor' as const,
            restores: true,
            command: (out: string): Command => ({
              cmd: process.execPath,
              args: [
                join(root, 'dist', 'bench', 'lib', 'node-floor-restore.js'),
                snapshotPath,
                out,
                '--wal',
                ...(check ? ['--check'] : []),
              ],
            }),
          })),
        ]),
    ...(s3Snapshot === undefined
      ? []
      : [
          {
            name: 'node + AWS SDK: snapshot fetched, decoded and written (floor)',
            role: 'floor' as const,
            // Credentials in its environment (through env(1)), as a deployment gives them.
            command: (out: string): Command => ({
              cmd: 'env',
              args: [
                `AWS_ACCESS_KEY_ID=${CREDENTIALS.accessKeyId}`,
                `AWS_SECRET_ACCESS_KEY=${CREDENTIALS.secretAccessKey}`,
                process.execPath,
                join(root, 'dist', 'bench', 'lib', 'node-floor-restore.js'),
                '--s3',
                s3Snapshot.endpoint,
                s3Snapshot.bucket,
                s3Snapshot.key,
                out,
              ],
            }),
          },
        ]),
  ];
}

interface S3Source {
  server: S3ServerChild;
  /** Restore arguments naming the replica: `-config <yml> <db path>`. */
  args: string[];
  info: Omit<S3Info, 'requestsPerRestore'>;
  /** Where the tools reach the replica (through the latency proxy when there is one). */
  target: S3Target;
}

/**
 * Starts the local S3 server, copies the fixture's replica into a bucket and checks it, and writes the
 * config both tools restore with. The db path only names the database in the config: nothing is there.
 */
async function setUpS3(
  dir: string,
  replica: { dir: string; files: Manifest['replica']['files'] },
  age: AgeKeys | undefined,
  env: Record<string, string>,
  latencyMs: number,
  log: (s: string) => void,
): Promise<S3Source> {
  resetDir(dir);
  const server = await S3ServerChild.start(env, latencyMs);
  try {
    // Set up directly; the tools go through the latency proxy when there is one.
    const target: S3Target = { endpoint: server.directEndpoint, bucket: 'restore-bench', prefix: 'station-db' };
    await createBucket(target.endpoint, target.bucket);
    log(`s3: ${server.version} at ${target.endpoint}; copying the replica to s3://${target.bucket}/${target.prefix}`);
    const upload = await uploadReplica(target, replica.dir, replica.files);
    await verifyReplica(target, replica.dir, replica.files);
    log(
      `s3: ${upload.objects} objects, ${(upload.bytes / 2 ** 20).toFixed(1)} MiB in ${upload.seconds.toFixed(1)} s; read back, same sha256`,
    );
    const dbPath = join(dir, 'station.db');
    const config = join(dir, 'litestream.yml');
    writeFileSync(config, s3Config(dbPath, { ...target, endpoint: server.endpoint }, age ? ageConfigLines(age) : []));
    if (latencyMs > 0) log(`s3: every request the tools make is held back ${latencyMs} ms`);
    return {
      server,
      args: ['-config', config, dbPath],
      target: { ...target, endpoint: server.endpoint },
      info: { server: server.version, bucket: target.bucket, prefix: target.prefix, upload, verified: true, latencyMs },
    };
  } catch (e) {
    await server.stop();
    throw e;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      backend: { type: 'string', default: 'file' },
      fixture: { type: 'string', default: 'large' },
      'latency-ms': { type: 'string' },
      rebuild: { type: 'boolean', default: false },
      timer: { type: 'string', default: 'auto' },
      'only-litestream': { type: 'boolean', default: false },
      age: { type: 'boolean', default: false },
    },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, not ${values.runs}`);
  const backend = values.backend;
  if (backend !== 'file' && backend !== 's3') throw new Error(`--backend must be file or s3, not ${backend}`);
  const profile: FixtureProfile | undefined = PROFILES[values.fixture as FixtureProfile['name']];
  if (!profile) throw new Error(`--fixture must be one of ${Object.keys(PROFILES).join(', ')}, not ${values.fixture}`);
  const latencyMs = Number(values['latency-ms'] ?? (profile.name === 'long-history' && backend === 's3' ? 20 : 0));
  if (!Number.isFinite(latencyMs) || latencyMs < 0)
    throw new Error(`--latency-ms must be a number of milliseconds, not ${values['latency-ms']}`);
  if (latencyMs > 0 && backend !== 's3') throw new Error('--latency-ms needs --backend s3');
  const onlyLitestream = values['only-litestream'] || process.env.STN_BENCH_ONLY_LITESTREAM === '1';
  const timer = pickTimer(values.timer);
  const env = cleanEnv({ LANG: 'C' });

  const root = findRoot();
  const outDir = join(root, 'bench', 'out');
  const paths = fixturePaths(join(outDir, profile.name === 'large' ? 'restore-fixture' : `restore-fixture-${profile.name}`));
  const work = join(outDir, 'restore-work');
  const log = (s: string) => console.log(s);

  // 1. The fixture: cached unless --rebuild or the cache is incomplete/changed.
  let manifest: Manifest;
  let reused = false;
  const cached = values.rebuild ? '--rebuild' : loadFixture(paths, profile);
  if (typeof cached === 'string') {
    log(`fixture: ${cached}`);
    manifest = await buildFixture(paths, profile, log);
  } else {
    manifest = cached;
    reused = true;
    log(`fixture: reusing ${relative(root, paths.dir)} (built ${manifest.builtAt}; --rebuild to redo)`);
  }

  // With --age the fixture's objects are encrypted (afresh each run, to a new key pair) into restore-age/.
  let age:
    { keys: AgeKeys; replica: { dir: string; files: Manifest['replica']['files'] }; encryptSeconds: number; bytes: number } | undefined;
  if (values.age) {
    const keys = await newAgeKeys();
    const dir = join(outDir, 'restore-age', 'replica');
    resetDir(dir);
    log(`age: encrypting the replica's ${manifest.replica.files.length} objects to a new key pair…`);
    const done = await encryptReplica(paths.replica, manifest.replica.files, dir, keys);
    age = { keys, replica: { dir, files: replicaStats(dir).files }, encryptSeconds: done.seconds, bytes: done.bytes };
    log(`age: ${(done.bytes / 2 ** 20).toFixed(1)} MiB in ${done.seconds.toFixed(1)} s`);
  }
  const replica = age?.replica ?? { dir: paths.replica, files: manifest.replica.files };
  // The Node floor reads the snapshot file itself: a plain file replica only.
  const snapshots = replica.files.filter((f) => f.path.endsWith('.snapshot.lz4')).map((f) => f.path);
  const snapshotPath = backend === 'file' && !age && snapshots.length === 1 ? join(replica.dir, snapshots[0]!) : undefined;
  // With --backend s3 the replica's objects go into a bucket of a local S3 server that lives until the end.
  const s3 = backend === 's3' ? await setUpS3(join(outDir, 'restore-s3'), replica, age?.keys, env, latencyMs, log) : undefined;
  try {
    // An encrypted file replica is read through a config too: only a config holds the identity.
    let source = s3?.args ?? [`file://${paths.replica}`];
    if (age && !s3) {
      const config = join(outDir, 'restore-age', 'litestream.yml');
      const dbPath = join(outDir, 'restore-age', 'station.db');
      writeFileSync(
        config,
        [
          'dbs:',
          `  - path: ${dbPath}`,
          '    replicas:',
          '      - type: file',
          `        path: ${age.replica.dir}`,
          ...ageConfigLines(age.keys).map((l) => `        ${l}`),
          '',
        ].join('\n'),
      );
      source = ['-config', config, dbPath];
    }
    // With one snapshot on S3 (not encrypted): the least a restore from S3 in Node does.
    const s3Snapshot =
      s3 && !age && snapshots.length === 1
        ? { endpoint: s3.target.endpoint, bucket: s3.target.bucket, key: `${s3.target.prefix}/${snapshots[0]!}` }
        : undefined;
    const all = variants(root, paths, source, onlyLitestream, snapshotPath, s3Snapshot);
    const checks = warmUpAndCheck(all, paths, manifest, work, env, log);
    const { samples, requests } = await timedRuns(all, runs, timer, work, env, s3?.server, log);
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
      backend,
      ...(age ? { age: { encryptSeconds: age.encryptSeconds, bytes: age.bytes } } : {}),
      ...(s3 ? { s3: { ...s3.info, requestsPerRestore: Object.fromEntries(all.map((v) => [v.name, requests.get(v)!])) } } : {}),
      fixture: {
        profile: profile.name,
        dir: relative(root, paths.dir),
        reused,
        builtAt: manifest.builtAt,
        buildSeconds: manifest.buildSeconds,
        db: manifest.db,
        replica,
      },
      correctness: checks,
      variants: results,
      ratios: ratios(results),
    };
    const jsonPath = join(
      outDir,
      `restore-${profile.name}${s3 ? '-s3' : ''}${age ? '-age' : ''}-${report.createdAt.replace(/[:.]/g, '-')}.json`,
    );
    writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
    log(`\n${formatReport(report)}\n\nJSON: ${relative(root, jsonPath)}`);
  } finally {
    await s3?.server.stop();
  }
}

/**
 * 2. Warm-ups, which double as the correctness check: every restore variant's output must have the
 *    source's content (hence the same content as each other). The source is re-read rather than
 *    trusted from the manifest, so a changed cache cannot pass. Whether each output is also the same
 *    file, byte for byte, as Litestream's is recorded too (the oracle tests require it; here it is
 *    reported, and the content check is what fails the run).
 */
function warmUpAndCheck(
  all: Variant[],
  paths: ReturnType<typeof fixturePaths>,
  manifest: Manifest,
  work: string,
  env: Record<string, string>,
  log: (s: string) => void,
): Report['correctness'] {
  const source = contentDigest(paths.db);
  if (source.sha256 !== manifest.db.digest.sha256)
    throw new Error('the cached source database changed since the build: run with --rebuild');
  resetDir(work);
  const checked: string[] = [];
  const fileSha256 = new Map<Variant, string>();
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
    if (v.role === 'floor' && !v.restores) continue;
    const got = contentDigest(out);
    if (got.sha256 !== source.sha256 || got.rows !== source.rows) {
      throw new Error(
        `${v.name} restored different content: sha256 ${got.sha256} (${got.rows} rows), source ${source.sha256} (${source.rows} rows)`,
      );
    }
    checked.push(v.name);
    fileSha256.set(v, fileDigest(out));
  }
  const base = all.find((v) => v.role === 'litestream');
  const baseSha = base && fileSha256.get(base);
  const sameBytesAsLitestream = all
    .filter((v) => v.role === 'ours' && baseSha !== undefined && fileSha256.get(v) === baseSha)
    .map((v) => v.name);
  return { sourceSha256: source.sha256, rows: source.rows, checked, sameBytesAsLitestream };
}

/** sha256 of a whole file, read in chunks (the restored databases are ~200 MB). */
function fileDigest(path: string): string {
  const h = createHash('sha256');
  const buf = Buffer.alloc(1 << 20);
  const fd = openSync(path, 'r');
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/**
 * 3. Timed runs. Adjacent variants share conditions, and reversing the order every other round
 *    cancels "who runs right after whom" (e.g. the previous run's 200 MB still being written back).
 *    `sync` before each run flushes that write-back outside the timed region. With an S3 server, the
 *    requests each run made are read from it after the run (nothing else talks to it meanwhile).
 */
async function timedRuns(
  all: Variant[],
  runs: number,
  timer: ReturnType<typeof pickTimer>,
  work: string,
  env: Record<string, string>,
  server: S3ServerChild | undefined,
  log: (s: string) => void,
): Promise<{ samples: Map<Variant, Sample[]>; requests: Map<Variant, KindCounts[]> }> {
  const samples = new Map<Variant, Sample[]>(all.map((v) => [v, []]));
  const requests = new Map<Variant, KindCounts[]>(all.map((v) => [v, []]));
  const out = join(work, 'db');
  if (server) await server.counts(); // the warm-ups' requests are not a timed run's
  for (let round = 0; round < runs; round++) {
    for (const v of round % 2 ? [...all].reverse() : all) {
      resetDir(work);
      run({ cmd: 'sync', args: [] }, env);
      const s = measure(timer, v.command(out), env);
      if (!existsSync(out)) throw new Error(`${v.name} exited 0 but wrote no ${out}`);
      samples.get(v)!.push(s);
      const req = server ? await server.counts() : undefined;
      if (req) requests.get(v)!.push(req);
      const reqText = req ? `  ${totalOf(req)} requests` : '';
      log(`round ${round + 1}/${runs}  ${v.name.padEnd(36)} ${s.seconds.toFixed(2)} s  ${s.rssMiB.toFixed(0)} MiB${reqText}`);
    }
  }
  return { samples, requests };
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
