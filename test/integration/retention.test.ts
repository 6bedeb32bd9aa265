/**
 * Retention and scheduled snapshots on a file replica, end to end.
 *
 * The randomized test replays days of history in a few seconds: the replication's clock is injected
 * and every object the replica writes is stamped (file mtime = the replica's CreatedAt) with the
 * simulated time of the step that wrote it. After each retention run, every recorded state that the
 * retained objects cover must restore to exactly its content, by timestamp.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { collect } from '../../src/client/replica-client.js';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { restore } from '../../src/replica/restore.js';
import type { RetentionResult } from '../../src/replica/replica.js';
import { startReplication, type Replication } from '../../src/replication.js';
import { defaultMetaPath } from '../../src/meta/meta-dir.js';
import { runLitestream } from '../helpers/oracle.js';
import { HOUR, SIM_START, Stamper, verifyRetainedStates, type RecordedState } from '../helpers/simulated-history.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-retention-');
const apps = closeAfterEach((a: Database.Database) => a.close());
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

/** A fresh app database (closed after the test) and a file replica beside it, by default a plain one. */
function appAndReplica<C = FileReplicaClient>(makeClient: (path: string) => C = (path) => new FileReplicaClient({ path }) as C) {
  const dir = tmp();
  const dbPath = join(dir, 'app.db');
  const replicaDir = join(dir, 'replica');
  const client = makeClient(replicaDir);
  const app = openSourceDb(dbPath);
  apps.push(app);
  return { dir, dbPath, replicaDir, client, app };
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('retention on a file replica', () => {
  it('randomized histories: after every retention run, every retained state restores exactly (30 seeds)', async () => {
    const RETENTION = 6 * HOUR;
    let checkedStates = 0;
    let deletedGenerations = 0;
    let deletedSnapshots = 0;
    let forcedSnapshots = 0;
    let litestreamTimestampRestores = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const rand = mulberry32(seed * 7919);
      const { dir, dbPath, replicaDir, client, app } = appAndReplica();
      let sim = SIM_START;
      const stamper = new Stamper(replicaDir);
      const start = async () => {
        const r = await startReplication({
          dbPath,
          // The background check would come after `RETENTION` real milliseconds: never, in this test.
          replicas: [{ client, syncIntervalMs: 5, retentionMs: RETENTION, retentionCheckIntervalMs: HOUR }],
          minCheckpointPageCount: 6,
          now: () => sim,
        });
        open.push(r);
        return r;
      };
      let r = await start();
      const states: RecordedState[] = [];
      let nextId = 1;
      const record = async () => {
        await r.sync();
        stamper.stamp(sim);
        states.push({ t: sim, generation: r.shipper.pos()!.generation, digest: contentDigest(app) });
      };

      const steps = 10 + Math.floor(rand() * 6);
      for (let step = 0; step < steps; step++) {
        // Whole seconds: mtimes and restore timestamps then compare exactly.
        sim += Math.round((10 + rand() * 110) * 60) * 1000;
        const op = rand();
        if (op < 0.55 || step === 0) {
          const n = 1 + Math.floor(rand() * 12);
          app.transaction(() => {
            for (let i = 0; i < n; i++)
              app
                .prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)')
                .run(nextId++, textOf(seed * 1000 + nextId, 200 + Math.floor(rand() * 3000)), step);
            if (rand() < 0.4) app.prepare('DELETE FROM t WHERE id % 5 = ?').run(Math.floor(rand() * 5));
            if (rand() < 0.3) app.prepare('UPDATE t SET n = n + 1 WHERE id % 3 = 0').run();
          })();
          await record();
        } else if (op < 0.7) {
          await r.sync();
          await r.replicas[0]!.snapshot();
          stamper.stamp(sim);
        } else if (op < 0.78) {
          // A new generation, as after the meta directory is lost: the replica starts over beside the old one.
          await r.close();
          rmSync(defaultMetaPath(dbPath), { recursive: true, force: true });
          r = await start();
          app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(nextId++, 'new generation', step);
          await record();
        } else {
          const result = (await r.replicas[0]!.enforceRetention())!;
          stamper.stamp(sim);
          deletedGenerations += result.deletedGenerations.length;
          deletedSnapshots += result.deletedSnapshots.length;
          if (result.snapshotTaken) forcedSnapshots++;
          checkedStates += (
            await verifyRetainedStates(
              client,
              dir,
              sim,
              RETENTION,
              r.shipper.pos()!.generation,
              states,
              result,
              `seed ${seed} step ${step}`,
            )
          ).length;
        }
      }
      // Always end with a retention run, so every history is checked at least once.
      sim += 3 * HOUR;
      const result = (await r.replicas[0]!.enforceRetention())!;
      stamper.stamp(sim);
      const covered = await verifyRetainedStates(
        client,
        dir,
        sim,
        RETENTION,
        r.shipper.pos()!.generation,
        states,
        result,
        `seed ${seed} end`,
      );
      checkedStates += covered.length;
      await r.close();
      open.splice(open.indexOf(r), 1);
      // The real Litestream restores the pruned replica too (it also checks the segments below the
      // snapshot it restores from, which retention must not leave half-deleted): latest, and the oldest
      // state still covered, by timestamp.
      const theirs = join(dir, 'theirs.db');
      const res = await runLitestream(['restore', '-o', theirs, `file://${replicaDir}`]);
      expect(res.code, `seed ${seed}: ${res.stderr}`).toBe(0);
      expect(contentDigest(theirs), `seed ${seed}: litestream latest`).toBe(states[states.length - 1]!.digest);
      if (covered.length > 0) {
        const oldest = join(dir, 'theirs-oldest.db');
        const res2 = await runLitestream([
          'restore',
          '-o',
          oldest,
          '-timestamp',
          new Date(covered[0]!.t).toISOString(),
          `file://${replicaDir}`,
        ]);
        expect(res2.code, `seed ${seed}: ${res2.stderr}`).toBe(0);
        expect(contentDigest(oldest), `seed ${seed}: litestream at ${new Date(covered[0]!.t).toISOString()}`).toBe(covered[0]!.digest);
        litestreamTimestampRestores++;
      }
    }
    // The histories exercised what they were meant to (fixed seeds: these are deterministic).
    expect(checkedStates).toBeGreaterThan(100);
    expect(deletedGenerations).toBeGreaterThan(0);
    expect(deletedSnapshots).toBeGreaterThan(0);
    expect(forcedSnapshots).toBeGreaterThan(0);
    expect(litestreamTimestampRestores).toBeGreaterThan(5);
  }, 300_000);

  it('scheduled snapshots and background retention (real short intervals); Litestream restores the pruned replica', async () => {
    const { dir, dbPath, replicaDir, client, app } = appAndReplica();
    const options = {
      dbPath,
      replicas: [{ client, syncIntervalMs: 10, snapshotIntervalMs: 200, retentionMs: 1000, retentionCheckIntervalMs: 100 }],
      minCheckpointPageCount: 6,
    };
    const insert = (n: number) =>
      app.transaction(() => {
        for (let i = 0; i < n; i++) app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run(textOf(i, 1500), i);
      })();

    // A first generation, left behind when the meta directory is lost.
    let r = await startReplication(options);
    open.push(r);
    insert(20);
    await r.sync();
    const oldGeneration = r.shipper.pos()!.generation;
    await r.close();
    open.splice(0);
    rmSync(defaultMetaPath(dbPath), { recursive: true, force: true });

    r = await startReplication(options);
    open.push(r);
    const seen: RetentionResult[] = [];
    let snapshots = 0;
    r.on('snapshot', () => snapshots++);
    // Wait (on events, not on time) until retention has removed the old generation and older snapshots.
    await new Promise<void>((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the replication's error, as it came
      r.on('error', (e) => reject(e.error));
      const writer = setInterval(() => insert(5), 50);
      r.on('retention', (e) => {
        seen.push(e);
        const gens = seen.flatMap((x) => x.deletedGenerations);
        const snaps = seen.flatMap((x) => x.deletedSnapshots).filter((s) => s.generation !== oldGeneration);
        if (gens.includes(oldGeneration) && snaps.length >= 2) {
          clearInterval(writer);
          resolve();
        }
      });
    });
    await r.sync();
    // Two snapshots of this generation were deleted and one is kept: three were written, by the schedule
    // (the first one, at start, may have been written before the listener was attached).
    expect(snapshots).toBeGreaterThanOrEqual(2);
    expect(await client.generations()).toEqual([r.shipper.pos()!.generation]);
    // Litestream (which also checks the segments below its snapshot) and we restore the latest state.
    const expected = contentDigest(app);
    const theirs = join(dir, 'theirs.db');
    const res = await runLitestream(['restore', '-o', theirs, `file://${replicaDir}`]);
    expect(res.code, res.stderr).toBe(0);
    expect(contentDigest(theirs)).toBe(expected);
    const ours = join(dir, 'ours.db');
    await restore([{ name: 'file', client }], { outputPath: ours });
    expect(contentDigest(ours)).toBe(expected);
    await r.close();
  }, 60_000);

  it('a failed delete leaves a restorable replica, is reported, and the next check finishes the job', async () => {
    class FlakyClient extends FileReplicaClient {
      failures = 1;
      override async deleteSnapshot(generation: string, index: number): Promise<void> {
        if (this.failures-- > 0) throw new Error('injected delete failure');
        return super.deleteSnapshot(generation, index);
      }
    }
    const { dir, dbPath, replicaDir, client, app } = appAndReplica((path) => new FlakyClient({ path }));
    let sim = SIM_START;
    const stamper = new Stamper(replicaDir);
    const r = await startReplication({ dbPath, replicas: [{ client, retentionMs: HOUR }], minCheckpointPageCount: 6, now: () => sim });
    open.push(r);
    const insert = (n: number) =>
      app.transaction(() => {
        for (let i = 0; i < n; i++) app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run(textOf(i, 2000), i);
      })();
    insert(30);
    await r.sync();
    stamper.stamp(sim);
    const firstIndex = r.shipper.pos()!.index;
    sim += 2 * HOUR;
    insert(30);
    await r.sync();
    insert(30);
    await r.sync();
    expect(r.shipper.pos()!.index).toBeGreaterThan(firstIndex); // precondition: the WAL index moved on
    await r.replicas[0]!.snapshot();
    stamper.stamp(sim);
    const expected = contentDigest(app);

    const failed = await r.replicas[0]!.enforceRetention().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failed).toMatchObject({ code: 'IO', message: expect.stringMatching(/retention stopped part-way: .*injected delete failure/) });
    // The segments below the kept snapshot went first; the old snapshot is still there. Both tools restore.
    const generation = r.shipper.pos()!.generation;
    expect((await collect(client.snapshots(generation))).map((s) => s.index)).toContain(firstIndex);
    expect((await collect(client.walSegments(generation))).every((s) => s.index >= r.shipper.pos()!.index)).toBe(true);
    const theirs = join(dir, 'theirs.db');
    const res = await runLitestream(['restore', '-o', theirs, `file://${replicaDir}`]);
    expect(res.code, res.stderr).toBe(0);
    expect(contentDigest(theirs)).toBe(expected);

    const retried = (await r.replicas[0]!.enforceRetention())!;
    expect(retried.deletedSnapshots).toEqual([{ generation, index: firstIndex }]);
    expect((await collect(client.snapshots(generation))).map((s) => s.index)).toEqual([r.shipper.pos()!.index]);
    const ours = join(dir, 'ours.db');
    await restore([{ name: 'file', client }], { outputPath: ours });
    expect(contentDigest(ours)).toBe(expected);
    await r.close();
  }, 60_000);

  it('at start, the first scheduled snapshot is due at the latest snapshot + interval: at once when overdue', async () => {
    const { dbPath, client, app } = appAndReplica();
    app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('x', 1);
    let offset = 0;
    const now = () => Date.now() + offset;
    // Checkpoints every few pages, so the WAL index moves on past the first snapshot's: a snapshot at
    // an index that already has one would be skipped, not written.
    const opts = { dbPath, now, replicas: [{ client, snapshotIntervalMs: HOUR }], minCheckpointPageCount: 2 };
    let r = await startReplication(opts);
    open.push(r);
    await r.sync();
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    const [first] = await collect(client.snapshots(r.shipper.pos()!.generation));
    while (r.shipper.pos()!.index === first!.index) {
      insert.run(textOf(r.shipper.pos()!.offset, 3000), 2);
      await r.sync();
    }
    await r.close();
    open.splice(0);
    const generation = (await client.generations())[0]!;
    const before = await collect(client.snapshots(generation));
    expect(before).toHaveLength(1);

    // Restarted "two hours later" (same generation): the hourly snapshot is overdue and taken at once,
    // although a real hour has not passed.
    offset = 2 * HOUR;
    r = await startReplication(opts);
    open.push(r);
    const snap = await new Promise<{ generation: string }>((resolve) => r.once('snapshot', resolve));
    expect(snap.generation).toBe(generation);
    const after = await collect(client.snapshots(generation));
    expect(after).toHaveLength(2);
    expect(after[0]).toEqual(before[0]); // never rewritten
    await r.close();
  }, 60_000);
});
