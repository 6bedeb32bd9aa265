/**
 * Checkpoints are a means, not a rhythm: after one large commit the database goes quiet, and while an
 * application reader keeps the WAL from being fully backfilled, attempts back off and add no frames.
 * A WAL cycle that grows past what v0.3 segment names can address (4 GiB; lowered here) stops being
 * copied, says so once, and the generation ends at the next restart. Applications are other processes.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { startReplication, type Replication, type ReplicationOptions } from '../../src/replication.js';
import { runCli } from '../helpers/cli.js';
import { holdReadTransaction, sqliteCli, writeFromProcess } from '../helpers/app-process.js';
import { runLitestream } from '../helpers/oracle.js';
import { recordingLogger } from '../helpers/recording-logger.js';
import { contentDigest } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-ckpt-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));
const releases = closeAfterEach((r: () => Promise<void>) => r());

async function setup(opts: Partial<ReplicationOptions>) {
  const dir = tmp();
  const dbPath = join(dir, 'app.db');
  const replicaDir = join(dir, 'replica');
  await sqliteCli(dbPath, 'PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER);');
  const log = recordingLogger();
  const r = await startReplication({
    dbPath,
    replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 20 }],
    monitorIntervalMs: 100,
    logger: log,
    ...opts,
  });
  open.push(r);
  const checkpoints: { at: number; newIndex?: number }[] = [];
  r.on('checkpoint', (e) => checkpoints.push({ at: performance.now(), newIndex: e.newIndex }));
  const generations: { generation: string; reason: string }[] = []; // after the first one
  r.on('generation', (e) => generations.push(e));
  return { dir, dbPath, replicaDir, r, log, checkpoints, generations };
}

async function bothRestoreTo(dir: string, replicaDir: string, expected: string): Promise<void> {
  for (const tool of ['ours', 'litestream'] as const) {
    const out = join(dir, `${tool}-${Math.random().toString(36).slice(2)}.db`);
    const res =
      tool === 'ours'
        ? await runCli(['restore', '-o', out, `file://${replicaDir}`])
        : await runLitestream(['restore', '-o', out, `file://${replicaDir}`]);
    expect(res.code, `${tool}: ${res.stderr}`).toBe(0);
    expect(contentDigest(out), tool).toBe(expected);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('checkpoint control', () => {
  it('one large commit, then quiet: one checkpoint that restarts the WAL, then none', async () => {
    const s = await setup({});
    await writeFromProcess('node', s.dbPath, 1, 60, 100_000); // ~6 MB: past min-checkpoint-page-count (1000 pages)
    await waitFor(() => s.checkpoints.some((c) => c.newIndex !== undefined), 'the checkpoint after the large commit');
    const after = s.checkpoints.length;
    await sleep(2500); // idle: 25 polls, and the watcher sees our own writes
    expect(s.checkpoints.length - after, 'checkpoints while idle').toBe(0);
    expect(s.checkpoints.filter((c) => c.newIndex !== undefined)).toHaveLength(1);
    await s.r.sync();
    await bothRestoreTo(s.dir, s.replicaDir, contentDigest(s.dbPath));
  });

  it('min-checkpoint-page-count 1, then quiet: our own restart write is not checkpointed again (no new WAL index per sync)', async () => {
    // One frame reaches the threshold, and our restart write is one frame: each checkpoint used to begin
    // a cycle that asked for the next one, ~100 new WAL indexes a second (each uploaded) on an idle database.
    const s = await setup({ minCheckpointPageCount: 1 });
    await writeFromProcess('node', s.dbPath, 1, 1, 100);
    await waitFor(() => s.checkpoints.some((c) => c.newIndex !== undefined), 'the checkpoint after the commit');
    await sleep(300);
    const after = s.checkpoints.length;
    const index = s.r.shipper.pos()!.index;
    await sleep(1500); // idle: 15 polls, and the watcher sees our own writes
    expect(s.checkpoints.length - after, 'checkpoints while idle').toBe(0);
    expect(s.r.shipper.pos()!.index).toBe(index);
    // A commit of the application's is checkpointed as before.
    await writeFromProcess('node', s.dbPath, 2, 1, 100);
    await waitFor(() => s.r.shipper.pos()!.index > index, 'the checkpoint after the second commit');
    await s.r.sync();
    await bothRestoreTo(s.dir, s.replicaDir, contentDigest(s.dbPath));
  });

  it('an application reader holding the WAL: attempts back off and write nothing; the restart follows its release', async () => {
    const s = await setup({ minCheckpointPageCount: 10 });
    await writeFromProcess('node', s.dbPath, 1, 30, 4000);
    await waitFor(() => s.checkpoints.some((c) => c.newIndex !== undefined), 'a first checkpoint');
    const reader = await holdReadTransaction(s.dbPath);
    releases.push(reader.release);
    await writeFromProcess('node', s.dbPath, 100, 30, 4000); // past the threshold; the reader's snapshot predates it
    await s.r.sync();
    const walBefore = statSync(`${s.dbPath}-wal`).size;
    const before = s.checkpoints.length;
    const started = performance.now();
    await sleep(3500);
    const attempts = s.checkpoints.filter((c) => c.at >= started).length;
    // Backoff 1 s, 2 s, 4 s…: at most three attempts in 3.5 s (a storm would be one per poll: 35).
    expect(attempts, 'checkpoint attempts while the reader holds').toBeLessThanOrEqual(3);
    expect(s.checkpoints.slice(before).filter((c) => c.newIndex !== undefined)).toEqual([]);
    expect(statSync(`${s.dbPath}-wal`).size, 'the WAL did not grow: no write of ours while nothing could restart').toBe(walBefore);
    await reader.release();
    releases.splice(0);
    const index = s.r.shipper.pos()!.index;
    await waitFor(() => s.r.shipper.pos()!.index > index, 'the restart after the reader left', 30_000);
    expect(s.generations, 'no new generation').toEqual([]);
    await s.r.sync();
    await bothRestoreTo(s.dir, s.replicaDir, contentDigest(s.dbPath));
  });

  it('a WAL cycle past the offset limit is not copied further, says so once, and the generation ends at the restart', async () => {
    const limit = 300_000;
    const s = await setup({ minCheckpointPageCount: 20, maxShadowWalFileBytes: limit });
    const reader = await holdReadTransaction(s.dbPath);
    releases.push(reader.release);
    for (let i = 0; i < 12; i++) await writeFromProcess('node', s.dbPath, 1 + i * 10, 10, 4000); // ~500 KB
    await s.r.sync();
    const pos = s.r.shipper.pos()!;
    expect(pos.offset).toBeLessThanOrEqual(limit);
    const errors = s.log.lines.filter((l) => l.level === 'error' && /largest offset/.test(l.msg));
    expect(errors).toHaveLength(1);
    await reader.release();
    releases.splice(0);
    await waitFor(() => s.generations.length === 1, 'a new generation after the restart', 30_000);
    expect(s.generations[0]!.reason).toMatch(/more than v0\.3 segment names can address/);
    await s.r.sync();
    await bothRestoreTo(s.dir, s.replicaDir, contentDigest(s.dbPath));
  });

  it("an application's TRUNCATE, and the random salts of the next writer: followed, no new generation", async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    await sqliteCli(dbPath, 'PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER);');
    const start = () =>
      startReplication({
        dbPath,
        replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 20 }],
        monitorIntervalMs: 100,
        minCheckpointPageCount: 100_000,
      });
    // A first run creates Litestream's tables; the application keeps a connection open while it writes.
    const app = new Database(dbPath, { timeout: 5000 });
    await (await start()).close();
    for (let i = 1; i <= 5; i++) app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(i, 'x', i);
    app.pragma('wal_checkpoint(PASSIVE)');
    // The replicator starts on a fully backfilled WAL (kept by the idle application connection): its read
    // transaction sits in SQLite's read slot 0, which lets an application's TRUNCATE through.
    const generations: string[] = [];
    const r = await start();
    open.push(r);
    app.close();
    r.on('generation', (e) => generations.push(e.reason));
    const before = r.shipper.pos()!;
    expect(await sqliteCli(dbPath, 'PRAGMA wal_checkpoint(TRUNCATE);'), 'the TRUNCATE happened').toBe('0|0|0');
    // A connection that never restarted the WAL itself writes the new cycle's header with random salts.
    await writeFromProcess('node', dbPath, 100, 5);
    await r.sync();
    await writeFromProcess('sqlite3', dbPath, 200, 5);
    await r.sync();
    expect(generations, 'no new generation').toEqual([]);
    expect(r.shipper.pos()!.generation).toBe(before.generation);
    expect(r.shipper.pos()!.index).toBeGreaterThan(before.index);
    await bothRestoreTo(dir, replicaDir, contentDigest(dbPath));
  });
});
