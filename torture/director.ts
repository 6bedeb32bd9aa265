/**
 * The director of a round: runs the planned events one after another while the background load goes on
 * — replicator SIGKILLs and restarts, store outages, big transactions, VACUUM, a writer killed
 * mid-transaction — and records points in time: quiesce the writers, wait until the replica provably
 * holds everything (our latest restore has the live database's digest), let the clock pass the last
 * upload, note the time, let it pass again before anything is written.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkRestore, type CheckContext, type RestoreOutcome } from './checks.js';
import type { DbFacts } from './digest.js';
import { diffKeys, readLedger } from './ledger.js';
import type { Rng } from './random.js';
import type { ReplicatorRun } from './replicator.js';
import type { PlannedEvent } from './schedule.js';
import type { Store } from './store.js';
import type { Workload } from './workload.js';

/** A replicator log line that says an upload just happened (or is starting): the next may be in flight. */
const UPLOAD_LINE = /msg="(write snapshot|write wal segment|snapshot written|wal segment written)"/;

export interface RecordedPit {
  at: Date;
  facts: DbFacts;
}

export interface DirectorDeps {
  repl: ReplicatorRun;
  workload: Workload;
  store: Store;
  check: CheckContext;
  db: string;
  ledgerDir: string;
  scratchDir: string;
  rng: Rng;
  signal: AbortSignal;
  /** How long a point in time may wait for the replica to catch up before the round fails. */
  catchUpMs: number;
  log(line: string): void;
  fail(reason: string): void;
}

export class Director {
  readonly pits: RecordedPit[] = [];
  pitUnsettled = 0;
  kills = 0;
  appKills = 0;
  readonly outages: string[] = [];
  private polls = 0;
  private bigs = 0;

  constructor(private readonly d: DirectorDeps) {
    mkdirSync(d.scratchDir, { recursive: true });
  }

  private async pause(ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.d.signal }).catch(() => undefined);
  }

  async killAndRestart(restartAfterMs: number, why: string): Promise<void> {
    if (!this.d.repl.running) return;
    await this.d.repl.kill();
    this.kills++;
    this.d.log(`SIGKILL replicator (${why}); restart in ${restartAfterMs} ms`);
    await this.pause(restartAfterMs);
    if (!this.d.signal.aborted && !this.d.repl.running) this.d.repl.start();
  }

  async run(event: PlannedEvent): Promise<void> {
    const { workload, db } = this.d;
    switch (event.kind) {
      case 'pit':
        return this.pointInTime();
      case 'kill':
        if (event.style === 'on-upload') await this.d.repl.waitForLog(UPLOAD_LINE, 5_000).catch(() => undefined);
        return this.killAndRestart(event.restartAfterMs, event.style);
      case 'outage': {
        const what = await this.d.store.beginOutage((items) => this.d.rng.pick(items));
        this.outages.push(what);
        this.d.log(`outage: ${what} for ${event.ms} ms`);
        try {
          await this.pause(event.ms);
        } finally {
          await this.d.store.endOutage();
        }
        return;
      }
      case 'big': {
        const name = `big-${++this.bigs}`;
        const p = workload.role(name, { role: 'big', db, ...workload.idsAndLedger(name), parts: event.parts, partBytes: event.partBytes });
        this.d.log(`big transaction: ${event.parts} MiB${event.kill ? `, SIGKILL of the replicator ${event.kill.style}` : ''}`);
        let killer: Promise<void> | undefined;
        const k = event.kill;
        if (k?.style === 'big-inflight') {
          const atPart = (l: string) => l.startsWith('{"ev":"part"') && ((JSON.parse(l) as { n: number }).n ?? 0) >= k.atPart;
          killer = p
            .waitForLine(atPart, 300_000)
            .then(() => this.killAndRestart(k.restartAfterMs, `big transaction in flight, part ${k.atPart}`));
        } else if (k?.style === 'big-committed') {
          killer = p.waitForEvent('committed', 300_000).then(async () => {
            await this.pause(k.delayMs);
            await this.killAndRestart(k.restartAfterMs, `${k.delayMs} ms after a big commit`);
          });
        }
        await p.exit;
        await killer?.catch(() => undefined);
        return;
      }
      case 'vacuum':
        this.d.log('VACUUM');
        await workload.role('vacuum', { role: 'vacuum', db }).exit;
        return;
      case 'doomed': {
        const p = workload.role('doomed', { role: 'doomed', db, ...workload.idsAndLedger('doomed'), rows: event.rows });
        try {
          await p.waitForEvent('intx', 60_000);
        } catch (e) {
          this.d.fail(`the doomed writer never got into its transaction: ${(e as Error).message.split('\n')[0]}`);
          p.kill('SIGKILL');
          return;
        }
        await this.pause(event.killAfterMs);
        p.kill('SIGKILL');
        await p.exit;
        this.appKills++;
        this.d.log(`SIGKILL writer mid-transaction (${event.rows} rows uncommitted)`);
        return;
      }
    }
  }

  /**
   * Polls our latest restore until it has the live digest. If the replica never catches up, says what
   * each tool restores instead (so a restore bug of ours is not mistaken for a replica left behind).
   */
  private async waitReplicaHolds(expected: DbFacts): Promise<string | undefined> {
    const deadline = performance.now() + this.d.catchUpMs;
    let last: RestoreOutcome = { status: 'error', detail: 'not tried' };
    while (performance.now() < deadline && !this.d.signal.aborted) {
      last = await checkRestore(this.d.check, 'ours', join(this.d.scratchDir, `poll-${++this.polls}.db`), expected);
      if (last.status === 'exact') return undefined;
      await this.pause(200);
    }
    const theirs = await checkRestore(this.d.check, 'litestream', join(this.d.scratchDir, `poll-${++this.polls}.db`), expected);
    const say = (r: RestoreOutcome) => `${r.status}${r.detail ? ` (${r.detail})` : ''}`;
    return `latest restore by ours: ${say(last)}; by litestream: ${say(theirs)}`;
  }

  async pointInTime(): Promise<void> {
    const { workload } = this.d;
    if (this.pitUnsettled > 0) {
      // The replica already failed to catch up once this round: waiting again would only repeat it.
      this.pitUnsettled++;
      this.d.log('point in time skipped: the replica fell behind earlier in this round');
      return;
    }
    await workload.pause();
    try {
      const live = await workload.facts(this.d.db, false);
      const ledger = readLedger(this.d.ledgerDir);
      const diff = diffKeys(ledger.committed, live.keys);
      if (diff.missing.length + diff.extra.length > 0) {
        this.d.fail(
          `point in time: the live database differs from the ledger (missing ${diff.missing.length}, extra ${diff.extra.length})`,
        );
      }
      const behind = await this.waitReplicaHolds(live);
      if (behind !== undefined) {
        this.pitUnsettled++;
        this.d.fail(`point in time: the replica did not catch up with the live database within ${this.d.catchUpMs / 1000} s; ${behind}`);
        return;
      }
      // Past the last upload's timestamp (1-second resolution on S3 and Azure), and again before the next.
      const settle = this.d.store.coarseTimestamps ? 1_100 : 30;
      await this.pause(settle);
      const at = new Date();
      await this.pause(settle);
      this.pits.push({ at, facts: live });
      this.d.log(`point in time ${at.toISOString()}: ${live.keys.length} rows`);
    } finally {
      workload.resume();
    }
  }
}
