/**
 * The scheduler asks again on its own after a sync that found a transaction still being written: the
 * commit that follows publishes it in shared memory, which makes no file event, and without this the
 * commit waited for the poll (up to monitor-interval; measured: 1 in 5 commits of a `synchronous=FULL`
 * app at 0.5-1 s of replica lag instead of ~5 ms).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { nullLogger } from '../../../src/logger.js';
import { SyncScheduler, type SyncOutcome } from '../../../src/shipper/sync-scheduler.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function scheduler(outcomes: SyncOutcome[], opts: { minGapMs?: number; onRun?: (n: number, s: SyncScheduler) => void } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'stn-scheduler-'));
  const dbPath = join(dir, 'app.db');
  writeFileSync(dbPath, '');
  writeFileSync(`${dbPath}-wal`, '');
  const runs: number[] = [];
  const s = new SyncScheduler({
    dbPath,
    walPath: `${dbPath}-wal`,
    monitorIntervalMs: 60_000, // no poll during the test: only a notification or a recheck can run a sync
    minGapMs: opts.minGapMs ?? 15,
    log: nullLogger,
    run: async () => {
      runs.push(performance.now());
      opts.onRun?.(runs.length, s);
      return outcomes.shift();
    },
  });
  cleanups.push(() => {
    s.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  s.start();
  return { s, runs, walPath: `${dbPath}-wal` };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await sleep(10);
  expect(cond(), what).toBe(true);
}

describe('SyncScheduler', () => {
  it('asks again, backing off, while a transaction is in progress, and stops asking once it is not', async () => {
    const { runs, walPath } = scheduler(['in-progress', 'in-progress', 'in-progress', undefined]);
    writeFileSync(walPath, 'frames'); // the commit's write: one file event
    await until(() => runs.length === 4, `4 syncs from one file event, got ${runs.length}`);
    await sleep(300);
    expect(runs).toHaveLength(4); // settled: nothing more until the next event or poll
  });

  it('backs off while the frames stay (a writer that died mid-commit leaves them for good)', async () => {
    const { runs, walPath } = scheduler(Array<'in-progress'>(1000).fill('in-progress'));
    writeFileSync(walPath, 'frames');
    await sleep(1000);
    // Every 2 ms would be ~500 syncs; doubling from 2 ms is 9 (2, 4, … 512).
    expect(runs.length).toBeGreaterThanOrEqual(2);
    expect(runs.length).toBeLessThanOrEqual(12);
  });

  it('after a sync that copied and saw a transaction still being written, syncs again after the gap', async () => {
    const { runs, walPath } = scheduler(['in-progress-after-copy', undefined]);
    writeFileSync(walPath, 'frames');
    await until(() => runs.length === 2, `2 syncs from one file event, got ${runs.length}`);
    await sleep(300);
    expect(runs).toHaveLength(2);
  });

  it('runs once per file event when no transaction is in progress', async () => {
    const { runs, walPath } = scheduler(['copied']);
    writeFileSync(walPath, 'frames');
    await until(() => runs.length === 1, 'one sync');
    await sleep(300);
    expect(runs).toHaveLength(1);
  });

  it('while the app writes faster than the gap, syncs after each gap without the watch, then arms it and looks once more', async () => {
    let walPath = '';
    const watching: boolean[] = [];
    // The first sync's commit is followed by another within the gap (a busy app): the second sync waited
    // for the gap and copied, so the ones after it run on the gap alone. Writes made while they run make
    // no sync of their own (no watch); the first sync that finds nothing arms it and asks for one more.
    const { runs, walPath: w } = scheduler(['copied', 'copied', 'copied', undefined, undefined], {
      minGapMs: 200,
      onRun: (n, s) => {
        watching.push(s.watching);
        if (n <= 3) writeFileSync(walPath, `frames ${n}`);
      },
    });
    walPath = w;
    writeFileSync(walPath, 'frames');
    await until(() => runs.length === 5, `5 syncs, got ${runs.length}`);
    await sleep(600);
    expect(runs).toHaveLength(5);
    // Armed for the first two (a commit may come at any time), not for the busy ones, armed for the last.
    expect(watching).toEqual([true, true, false, false, true]);
    writeFileSync(walPath, 'frames again'); // armed again: a commit wakes a sync
    await until(() => runs.length === 6, 'a sync from the armed watch');
  });
});
