/**
 * A simulated long history: about thirteen hours of replication into one file replica — four
 * generations (each started the way a real deployment gets one), dozens of WAL indexes (a low
 * min-checkpoint-page-count makes nearly every batch checkpoint) and a snapshot every hour — replayed
 * in seconds with an injected clock and simulated object times (see helpers/simulated-history.ts).
 *
 * After each batch of writes and `sync()` the time and the source's content digest are recorded. After
 * a retention run (one mid-history, one at the end, each pruning part of the oldest surviving
 * generation and, at the end, two whole generations):
 * 1. every recorded state in the retention window restores exactly, with our library, at its own time
 *    and at a time between it and the next batch;
 * 2. the real Litestream v0.3.13 restores the same content at timestamps in older surviving
 *    generations, on both sides of each generation boundary and at the latest state;
 * 3. a timestamp before the retained window is TIMESTAMP_OUT_OF_RANGE.
 *
 * The schedule is fixed (no randomness, no real-time waits): batches every 20 simulated minutes, 30
 * minutes between generations, and retention thresholds placed just before a kept snapshot so that
 * every state inside the window is restorable.
 */
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { collect } from '../../src/client/replica-client.js';
import { FileReplicaClient } from '../../src/client/file-client.js';
import type { RetentionResult } from '../../src/replica/replica.js';
import { restore } from '../../src/replica/restore.js';
import { startReplication, type Replication } from '../../src/replication.js';
import { defaultMetaPath } from '../../src/meta/meta-dir.js';
import { expectSameListings } from '../helpers/both-tools.js';
import { runLitestream } from '../helpers/oracle.js';
import { HOUR, MIN, SIM_START, Stamper, verifyRetainedStates, type RecordedState } from '../helpers/simulated-history.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-long-history-');
const apps = closeAfterEach((a: Database.Database) => {
  if (a.open) a.close();
});
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

const RETENTION = 6 * HOUR;
const BATCH_EVERY = 20 * MIN;
const BATCHES_PER_GENERATION = 9;
/** From the last batch of a generation to the first one of the next. */
const GENERATION_GAP = 30 * MIN;
/** A point strictly between a batch and whatever comes next (next batch or next generation). */
const BETWEEN = 10 * MIN;

/** Simulated minutes since SIM_START, as a time. */
const at = (minutes: number) => SIM_START + minutes * MIN;
const iso = (t: number) => new Date(t).toISOString();

/** How each generation after the first begins: what a real user does while the replicator is stopped. */
type Ending = 'meta directory lost' | 'WAL deleted' | 'WAL truncated by the application';
const ENDINGS: readonly Ending[] = ['meta directory lost', 'WAL deleted', 'WAL truncated by the application'];

describe('a simulated long history', () => {
  it('four generations, retention twice: every retained state restores by timestamp, Litestream agrees', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const replicaUrl = `file://${replicaDir}`;
    const client = new FileReplicaClient({ path: replicaDir });
    let app = openSourceDb(dbPath);
    apps.push(app);
    let sim = SIM_START;
    const stamper = new Stamper(replicaDir);
    let snapshotsWritten = 0;
    const indexes = new Set<string>();
    const start = async () => {
      const r = await startReplication({
        dbPath,
        // The background retention check would come after an hour of real time: never, in this test.
        replicas: [{ client, syncIntervalMs: 5, retentionMs: RETENTION, retentionCheckIntervalMs: HOUR }],
        minCheckpointPageCount: 6,
        now: () => sim,
      });
      open.push(r);
      r.on('snapshot', () => snapshotsWritten++);
      r.on('segment', (s) => indexes.add(`${s.generation}/${s.index}`));
      return r;
    };
    const stop = async (r: Replication) => {
      await r.close();
      open.splice(open.indexOf(r), 1);
    };

    const states: RecordedState[] = [];
    const generations: string[] = [];
    let nextId = 1;
    let batch = 0;
    let litestreamRuns = 0;
    let restores = 0;
    const writeBatch = () => {
      const b = batch++;
      app.transaction(() => {
        for (let i = 0; i < 8; i++)
          app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(nextId++, textOf(b * 100 + i, 1200 + ((b * 37) % 5) * 400), b);
        if (b % 3 === 1) app.prepare('DELETE FROM t WHERE id % 7 = ?').run(b % 7);
        if (b % 4 === 2) app.prepare('UPDATE t SET n = n + 1 WHERE id % 3 = 0').run();
      })();
    };

    // Mid-history retention at 7:55 keeps gen 1 from its 2:00 snapshot (threshold 1:55), so every
    // state in the window is restorable; the final one at 13:15 keeps gen 3 from its 7:20 snapshot
    // (threshold 7:15) and deletes generations 1 and 2 whole.
    const MID_RETENTION_AT = at(475);
    const FINAL_RETENTION_AT = at(795);
    type Check = { label: string; now: number; current: string; result: RetentionResult | undefined };
    const checks: Check[] = [];

    /** Gen 1 runs 0:20–3:00, gen 2 3:30–6:10, gen 3 6:40–9:20, gen 4 9:50–12:30. */
    const batchTime = (g: number, k: number) =>
      at(20) + g * ((BATCHES_PER_GENERATION - 1) * BATCH_EVERY + GENERATION_GAP) + k * BATCH_EVERY;
    let r = await start();
    for (let g = 0; g < 4; g++) {
      let lastSnapshotIndex = -1;
      for (let k = 0; k < BATCHES_PER_GENERATION; k++) {
        sim = batchTime(g, k);
        writeBatch();
        await r.sync();
        stamper.stamp(sim);
        const pos = r.shipper.pos()!;
        if (k === 0) {
          expect(generations, `a new generation at ${iso(sim)}`).not.toContain(pos.generation);
          generations.push(pos.generation);
        }
        states.push({ t: sim, generation: pos.generation, digest: contentDigest(app) });
        // Hourly snapshots (the generation's first one is taken when it starts).
        if (k % 3 === 2) {
          const snap = await r.replicas[0]!.snapshot();
          stamper.stamp(sim);
          // A new object, not an overwrite at the same index (which would move the older one's time).
          expect(snap.index, 'the WAL index moved on since the last snapshot').toBeGreaterThan(lastSnapshotIndex);
          lastSnapshotIndex = snap.index;
        } else if (k === 0) {
          lastSnapshotIndex = Math.max(...(await collect(client.snapshots(pos.generation))).map((s) => s.index));
        }
        // Anything the replicator uploads after the batch (the snapshot's checkpoint, a late segment)
        // belongs to this batch's time, not to whatever step comes next.
        await r.sync();
        stamper.stamp(sim);
        if (checks.length === 0 && batchTime(g, k + 1) > MID_RETENTION_AT) {
          // Retention runs between two batches, at its own simulated time.
          const batchAt = sim;
          sim = MID_RETENTION_AT;
          const result = await r.replicas[0]!.enforceRetention();
          stamper.stamp(sim);
          checks.push({ label: 'mid-history', now: sim, current: r.shipper.pos()!.generation, result });
          await verifyMidHistory(checks[0]!);
          sim = batchAt;
        }
      }
      if (g === 3) break;
      // The replicator is stopped and something happens that breaks continuity with the shadow WAL.
      await stop(r);
      stamper.stamp(sim); // the final sync of close() belongs to the generation that ends here
      const ending = ENDINGS[g]!;
      if (ending === 'meta directory lost') {
        rmSync(defaultMetaPath(dbPath), { recursive: true, force: true });
      } else if (ending === 'WAL deleted') {
        // The application closes the database: as its last connection, SQLite checkpoints and deletes
        // the WAL (the rmSync only makes sure). At restart there is no WAL header to match the shadow's.
        app.close();
        rmSync(`${dbPath}-wal`, { force: true });
        app = openSourceDb(dbPath);
        apps.push(app);
      } else {
        // A write while the replicator is down, then a TRUNCATE checkpoint: the WAL is empty at restart
        // and that write is only in the database file (the next generation's snapshot must carry it).
        app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(nextId++, 'written while the replicator was down', -1);
        app.pragma('wal_checkpoint(TRUNCATE)');
        expect(statSync(`${dbPath}-wal`).size).toBe(0);
      }
      r = await start();
    }

    // The history is what it is meant to be (deterministic; these guard the test's own premises).
    expect(generations).toHaveLength(4);
    expect(new Set(states.map((s) => s.digest)).size, 'every batch changes the content').toBe(states.length);
    expect(snapshotsWritten).toBeGreaterThanOrEqual(4 * 3);
    expect(indexes.size).toBeGreaterThanOrEqual(30);

    sim = FINAL_RETENTION_AT;
    const result = await r.replicas[0]!.enforceRetention();
    stamper.stamp(sim);
    const final: Check = { label: 'final', now: sim, current: r.shipper.pos()!.generation, result };
    await verifyFinal(final);
    await stop(r);

    async function verifyMidHistory(c: Check): Promise<void> {
      const [g1] = generations;
      expect(c.result!.deletedGenerations).toEqual([]);
      expect(c.result!.deletedSnapshots.map((s) => s.generation)).toEqual([g1, g1]); // the 0:20 and 1:00 ones
      expect(await client.generations()).toEqual([...generations].sort());
      await checkRestores(c, [
        { t: at(120), why: 'oldest retained state (gen 1, its oldest kept snapshot)' },
        { t: at(150), why: 'between two batches in gen 1' },
        { t: at(180), why: 'last state of gen 1 (generation boundary)' },
        { t: at(210), why: 'first state of gen 2 (generation boundary)' },
        { t: at(290), why: 'between two batches in gen 2' },
        { t: at(400), why: 'first state of gen 3 (generation boundary)' },
        { t: at(460), why: 'latest' },
      ]);
    }

    async function verifyFinal(c: Check): Promise<void> {
      const [g1, g2, g3] = generations;
      expect([...c.result!.deletedGenerations].sort()).toEqual([g1, g2].sort());
      expect(c.result!.deletedSnapshots).toHaveLength(1); // gen 3's 6:40 snapshot
      expect(c.result!.deletedSnapshots[0]!.generation).toBe(g3);
      expect(await client.generations()).toEqual([g3, generations[3]].sort());
      await checkRestores(c, [
        { t: at(440), why: 'oldest retained state (gen 3, its oldest kept snapshot)' },
        { t: at(510), why: 'between two batches in gen 3' },
        { t: at(560), why: 'last state of gen 3 (generation boundary)' },
        { t: at(590), why: 'first state of gen 4 (generation boundary, after the write made while stopped)' },
        { t: at(750), why: 'latest' },
      ]);
    }

    /** Checks 1–3 of the header after retention run `c`; `oracle` are the timestamps Litestream restores too. */
    async function checkRestores(c: Check, oracle: { t: number; why: string }[]): Promise<void> {
      const label = `${c.label} retention at ${iso(c.now)}`;
      const threshold = c.now - RETENTION;
      // 0. Litestream lists what we wrote (and retention left) exactly as we do.
      await expectSameListings([replicaUrl]);
      // 1a. Every recorded state in the window, at its own time (and the latest without a timestamp).
      const covered = await verifyRetainedStates(client, dir, c.now, RETENTION, c.current, states, c.result!, label);
      const inWindow = states.filter((s) => s.t >= threshold);
      expect(
        covered.map((s) => s.t),
        `${label}: every state in the window is restorable`,
      ).toEqual(inWindow.map((s) => s.t));
      // 1b. Between batches: the state of the last batch synced at or before T.
      for (const s of inWindow) await expectOurs(s.t + BETWEEN, s, label);

      // 2. The real Litestream restores the same content at the same timestamps: the named points, and
      // every other recorded state in the window.
      const named = new Set(oracle.map((o) => o.t));
      const points = [...oracle, ...inWindow.filter((s) => !named.has(s.t)).map((s) => ({ t: s.t, why: 'a recorded state' }))];
      expect(
        oracle.every((o) => o.t >= covered[0]!.t),
        'named points are inside the window',
      ).toBe(true);
      for (const { t, why } of points) {
        const expected = stateAt(t)!;
        await expectOurs(t, expected, label);
        const res = await litestreamRestore(t);
        expect(res.code, `${label}: litestream at ${iso(t)} (${why}): ${res.stderr}`).toBe(0);
        expect(contentDigest(res.out), `${label}: litestream at ${iso(t)} (${why})`).toBe(expected.digest);
      }
      const latest = await litestreamRestore(undefined);
      expect(latest.code, latest.stderr).toBe(0);
      expect(contentDigest(latest.out), `${label}: litestream latest`).toBe(states[states.length - 1]!.digest);

      // Where Litestream v0.3.13 differs on purpose (spec §7.1 and B8, docs/compatibility.md): it only
      // considers generations whose first..last object time contains T, so a time after one generation's
      // last upload and before the next one began — or after the last upload of all — matches nothing.
      // We restore the state that was live then: the last batch synced at or before T.
      const gaps = [
        ...generationEnds()
          .filter((s) => s.t >= threshold)
          .map((s) => s.t + GENERATION_GAP / 2),
        states[states.length - 1]!.t + BETWEEN,
      ];
      for (const t of gaps) {
        await expectOurs(t, stateAt(t)!, `${label} (after a generation's last upload)`);
        const res = await litestreamRestore(t);
        expect(res.code, `${label}: litestream at ${iso(t)}`).toBe(1);
        expect(res.stderr).toMatch(/no matching backups found/);
      }

      // 3. Before the window (here: just before the oldest retained state, and the very first batch).
      for (const t of [covered[0]!.t - 1000, states[0]!.t]) {
        const out = join(dir, `ours-early-${t}.db`);
        await expect(
          restore([{ name: 'file', client }], { outputPath: out, timestamp: new Date(t) }),
          `${label}: ${iso(t)}`,
        ).rejects.toMatchObject({
          code: 'TIMESTAMP_OUT_OF_RANGE',
        });
      }
      const early = await litestreamRestore(states[0]!.t);
      expect(early.code, `${label}: litestream at ${iso(states[0]!.t)}`).toBe(1);
      expect(early.stderr).toMatch(/no matching backups found/);
    }

    /** The recorded state of the last batch synced at or before `t`. */
    function stateAt(t: number): RecordedState | undefined {
      return states.filter((s) => s.t <= t).at(-1);
    }

    function generationEnds(): RecordedState[] {
      return states.filter((s, i) => i < states.length - 1 && states[i + 1]!.generation !== s.generation);
    }

    async function expectOurs(t: number, expected: RecordedState, label: string): Promise<void> {
      const out = join(dir, `ours-${restores++}.db`);
      await restore([{ name: 'file', client }], { outputPath: out, timestamp: new Date(t) });
      expect(contentDigest(out), `${label}: ours at ${iso(t)}`).toBe(expected.digest);
      rmSync(out);
    }

    async function litestreamRestore(t: number | undefined): Promise<{ code: number | null; stderr: string; out: string }> {
      const out = join(dir, `theirs-${litestreamRuns++}.db`);
      const args = ['restore', '-o', out, ...(t === undefined ? [] : ['-timestamp', iso(t)]), replicaUrl];
      const res = await runLitestream(args);
      return { code: res.code, stderr: res.stderr, out };
    }
  }, 120_000);
});
