/**
 * One torture round, as a library (the runner and the vitest short profile both call it): a fresh
 * database and replica, the replicator under test as a child process, the application as processes
 * that come and go, the director's faults and points in time; then the verdict: the latest restore by
 * ours and by Litestream equals the live database, the live database equals the ledger, every point in
 * time restores exactly, new generations only where continuity was really lost, and how many
 * checkpoints per second the replicator made at its peak.
 *
 * Holds no connection to the live database at any time: every read of it is a child process.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkRestore, listGenerations, type CheckContext } from './checks.js';
import { Director } from './director.js';
import { diffKeys, readLedger } from './ledger.js';
import { ProcessSet } from './procs.js';
import { Rng } from './random.js';
import { ReplicatorRun, writeConfig, type ReplicatorCommand, type ToolPaths } from './replicator.js';
import type { RoundResult } from './round-result.js';
import { planRound, type PlanOptions } from './schedule.js';
import { openStore, type Backend, type Servers } from './store.js';
import { Workload } from './workload.js';

export interface RoundSpec {
  index: number;
  seed: number;
  backend: Backend;
  seconds: number;
}

export interface HarnessOptions {
  /** Round directories are created under it. */
  rootDir: string;
  replicator: ReplicatorCommand;
  tools: ToolPaths;
  /** dist/torture/app.js */
  appJs: string;
  servers: Servers;
  /** The whole environment of every child: never the host's cloud credentials. */
  env: Record<string, string>;
  /** chattr +i for file-replica outages (root), or read-only modes. */
  asRoot: boolean;
  keep: boolean;
  plan?: PlanOptions;
  /** A peak above this many checkpoints in any second fails the round (unset: only reported). */
  maxCheckpointsPerSecond?: number;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

/** How many times a replicator that exits on its own is restarted within one round. */
const MAX_CRASH_RESTARTS = 5;

export async function runRound(spec: RoundSpec, o: HarnessOptions): Promise<RoundResult> {
  const started = performance.now();
  const plan = planRound(spec.seed, spec.backend, spec.seconds, o.plan);
  const rng = new Rng(spec.seed).fork('director');
  const dir = join(o.rootDir, `round-${spec.index}-${spec.backend}-${spec.seed.toString(16)}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'ledger'), { recursive: true });
  const log = (l: string) => o.log?.(`[round ${spec.index} ${spec.backend}] ${l}`);
  const failures: string[] = [];
  const fail = (reason: string) => {
    failures.push(reason);
    log(`FAIL: ${reason}`);
  };
  const abort = new AbortController();
  const procs = new ProcessSet();
  // Killing every child unblocks whatever the round waits on (every wait ends with some process's exit).
  const onAbort = () => {
    abort.abort();
    void procs.killAll();
  };
  o.signal?.addEventListener('abort', onAbort);

  const db = join(dir, 'app.db');
  const ledgerDir = join(dir, 'ledger');
  const store = await openStore(
    spec.backend,
    dir,
    `torture-${spec.index}-${spec.seed.toString(16)}-${Date.now().toString(36)}`,
    o.servers,
    o.asRoot,
  );
  const config = writeConfig(join(dir, 'litestream.yml'), { dbPath: db, replica: store.replicaLines, ...plan.settings });
  const restoreConfig = writeConfig(join(dir, 'restore.yml'), { dbPath: db, replica: store.restoreLines, ...plan.settings });
  const workload = new Workload(
    { procs, nodePath: o.tools.nodePath, appJs: o.appJs, db, ledgerDir, env: o.env },
    new Rng(spec.seed).fork('load'),
    plan.load,
  );
  const check: CheckContext = { procs, tools: o.tools, env: o.env, config: restoreConfig, db, facts: (p, i) => workload.facts(p, i) };
  let crashRestarts = 0;
  let ending = false;
  const repl: ReplicatorRun = new ReplicatorRun(procs, o.replicator, config, dir, o.env, (msg) => {
    fail(msg);
    if (ending || crashRestarts >= MAX_CRASH_RESTARTS) return;
    crashRestarts++;
    setTimeout(() => !ending && !repl.running && repl.start(), 1_000);
  });
  const director = new Director({
    repl,
    workload,
    store,
    check,
    db,
    ledgerDir,
    scratchDir: join(dir, 'restores'),
    rng,
    signal: abort.signal,
    catchUpMs: 45_000,
    log,
    fail,
  });
  const result: RoundResult = {
    index: spec.index,
    seed: spec.seed,
    backend: spec.backend,
    replicator: o.replicator.name,
    ok: false,
    aborted: false,
    failures,
    settings: plan.settings,
    durationMs: 0,
    latest: { ours: { status: 'error', detail: 'not reached' }, litestream: { status: 'error', detail: 'not reached' } },
    pitr: [],
    pitUnsettled: 0,
    generations: { listed: null, logged: [], unexpected: 0 },
    checkpoints: { total: 0, peakPerSecond: 0 },
    replicatorKills: 0,
    replicatorBoots: 0,
    replicatorErrorLines: 0,
    outages: [],
    appKills: 0,
    ledger: { transactions: 0, committedRows: 0, liveRows: 0, missing: 0, extra: 0, doomedSeen: 0 },
    workload: workload.counts,
  };
  try {
    log(`seed ${spec.seed} ${JSON.stringify(plan.settings)} events ${plan.events.map((e) => e.event.kind).join(',')}`);
    await workload.init();
    repl.start();
    workload.startBackground();
    let loadMs = 0;
    for (const { gapMs, event } of plan.events) {
      if (abort.signal.aborted) break;
      await sleep(gapMs, undefined, { signal: abort.signal }).catch(() => undefined);
      loadMs += gapMs;
      if (!abort.signal.aborted) await director.run(event);
    }
    const rest = spec.seconds * 1000 - loadMs;
    if (rest > 0) await sleep(rest, undefined, { signal: abort.signal }).catch(() => undefined);
    if (abort.signal.aborted) {
      result.aborted = true;
      fail('aborted');
      return result;
    }

    // The end: the application stops, then the replicator stops gracefully (a final sync).
    log('stopping the application');
    await workload.stop();
    ending = true;
    log('stopping the replicator (SIGTERM)');
    const stopped = await repl.stop(30_000);
    if (stopped?.forced) fail('the replicator did not exit within 30 s of SIGTERM');
    else if (stopped && stopped.code !== 0) {
      // Ended by the signal itself: it was not being handled (no final sync was made).
      const how = stopped.signal ? `was ended by ${stopped.signal} itself (no handler, so no final sync)` : `exited ${stopped.code}`;
      fail(`the replicator ${how} after SIGTERM (see the last replicator-*.log)`);
    }

    log('checking');
    const live = await workload.facts(db, true);
    if (live.integrity !== 'ok') fail(`the live database fails integrity_check: ${live.integrity}`);
    const ledger = readLedger(ledgerDir);
    const diff = diffKeys(ledger.committed, live.keys);
    const doomedSeen = live.keys.filter((k) => ledger.doomed.has(k)).length;
    result.ledger = {
      transactions: ledger.transactions,
      committedRows: ledger.committed.size,
      liveRows: live.keys.length,
      missing: diff.missing.length,
      extra: diff.extra.length,
      doomedSeen,
    };
    if (diff.missing.length + diff.extra.length > 0)
      fail(`the live database differs from the ledger: missing ${diff.missing.length}, extra ${diff.extra.length}`);
    if (doomedSeen > 0) fail(`${doomedSeen} rows of a transaction killed before COMMIT are in the live database`);
    if (ledger.unknownDeletes.length > 0) fail(`${ledger.unknownDeletes.length} deleted rows were never recorded as inserted`);
    for (const d of workload.counts.damage) fail(`an application process saw a damaged database: ${d}`);

    for (const tool of ['ours', 'litestream'] as const) {
      const r = await checkRestore(check, tool, join(dir, 'restores', `latest-${tool}.db`), live);
      result.latest[tool] = r;
      if (r.status !== 'exact') fail(`latest restore by ${tool}: ${r.status}${r.detail ? ` (${r.detail})` : ''}`);
    }
    for (const [i, pit] of director.pits.entries()) {
      const ours = await checkRestore(check, 'ours', join(dir, 'restores', `pit-${i}-ours.db`), pit.facts, pit.at);
      const litestream = await checkRestore(check, 'litestream', join(dir, 'restores', `pit-${i}-litestream.db`), pit.facts, pit.at);
      result.pitr.push({ at: pit.at.toISOString(), rows: pit.facts.keys.length, ours, litestream });
      if (ours.status !== 'exact')
        fail(`restore at ${pit.at.toISOString()} by ours: ${ours.status}${ours.detail ? ` (${ours.detail})` : ''}`);
      if (litestream.status !== 'exact' && litestream.status !== 'nomatch')
        fail(`restore at ${pit.at.toISOString()} by litestream: ${litestream.status} (${litestream.detail ?? ''})`);
    }

    const listed = await listGenerations(check);
    if (typeof listed === 'string') fail(listed);
    const logged = repl.generations();
    const unexpected = logged.filter((g) => !g.expected);
    result.generations = { listed: typeof listed === 'string' ? null : listed.length, logged, unexpected: unexpected.length };
    for (const g of unexpected) fail(`unexpected new generation ${g.generation} (boot ${g.boot}, mid-run): ${g.reason}`);
    result.checkpoints = { total: repl.checkpointTimes.length, peakPerSecond: repl.peakCheckpointsPerSecond() };
    if (o.maxCheckpointsPerSecond !== undefined && result.checkpoints.peakPerSecond > o.maxCheckpointsPerSecond) {
      fail(`${result.checkpoints.peakPerSecond} checkpoints within one second (bound ${o.maxCheckpointsPerSecond})`);
    }
    return result;
  } catch (e) {
    fail(`harness error: ${(e as Error).stack ?? String(e)}`);
    return result;
  } finally {
    ending = true;
    o.signal?.removeEventListener('abort', onAbort);
    await procs.killAll();
    result.pitUnsettled = director.pitUnsettled;
    result.replicatorKills = director.kills;
    result.replicatorBoots = repl.bootCount;
    result.replicatorErrorLines = repl.errorLines;
    result.outages = director.outages;
    result.appKills = director.appKills;
    result.ok = failures.length === 0;
    result.durationMs = Math.round(performance.now() - started);
    await store.dispose(true); // cloud servers keep objects in memory; a failed round is studied by replaying it
    rmSync(join(dir, 'restores'), { recursive: true, force: true });
    writeFileSync(join(dir, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
    if (result.ok && !o.keep) rmSync(dir, { recursive: true, force: true });
    else result.dir = dir;
  }
}
