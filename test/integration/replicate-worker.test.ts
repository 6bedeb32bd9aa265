/**
 * Embedded replication in a worker thread (the default): the application's own connection writes,
 * `await sync()` means the replica restores (Litestream as the oracle) to exactly that; the work happens
 * while the application's thread is blocked (impossible on its event loop); errors reach the caller
 * with the code and message the in-process mode gives; a worker that dies fails calls clearly; and
 * `inline: true` still runs on the caller's thread.
 *
 * The worker runs the compiled code in dist/ (see workerEntry in src/embedded/worker-replication.ts):
 * `npm run build` first, as for the CLI and torture tests.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { isReplicateError, ReplicateError } from '../../src/errors.js';
import { startReplication, type Replication, type ReplicationOptions } from '../../src/replication.js';
import { runLitestream } from '../helpers/oracle.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const root = join(import.meta.dirname, '..', '..');
const tmp = tempDirs('stn-worker-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

async function start(opts: ReplicationOptions): Promise<Replication> {
  const r = await startReplication(opts);
  open.push(r);
  return r;
}

async function litestreamRestores(replicaDir: string, dir: string, expected: string): Promise<void> {
  const out = join(dir, `restored-${Math.random().toString(36).slice(2)}.db`);
  const res = await runLitestream(['restore', '-o', out, `file://${replicaDir}`]);
  expect(res.code, res.stderr).toBe(0);
  expect(contentDigest(out), "Litestream's restore").toBe(expected);
}

/** WAL segment files of the replica's generation (none yet: empty). */
function segments(replicaDir: string, generation: string): string[] {
  const dir = join(replicaDir, 'generations', generation, 'wal');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/**
 * Blocks this thread (a synchronous loop: no timer, I/O callback or message runs) until a new segment
 * appears in the replica or `ms` pass. Returns whether one appeared, and whether a timer set before the
 * block fired during it (it must not: that is what "blocked" means).
 */
function blockUntilNewSegment(replicaDir: string, generation: string, ms: number): { appeared: boolean; timerFired: boolean } {
  const before = new Set(segments(replicaDir, generation));
  let timerFired = false;
  const t = setTimeout(() => (timerFired = true), 0);
  const deadline = performance.now() + ms;
  let appeared = false;
  while (performance.now() < deadline) {
    if (segments(replicaDir, generation).some((s) => !before.has(s))) {
      appeared = true;
      break;
    }
  }
  const fired = timerFired;
  clearTimeout(t);
  return { appeared, timerFired: fired };
}

describe('embedded replication in a worker thread', () => {
  it('default options: the caller writes, await sync(), and Litestream restores exactly that', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const app = openSourceDb(dbPath);
    const client = new FileReplicaClient({ path: replicaDir });
    const r = await start({ dbPath, replicas: [{ client }] });
    expect(r.inWorker).toBe(true);
    expect(r.dbPath).toBe(dbPath);
    const segmentsSeen: number[] = [];
    r.on('segment', (s) => segmentsSeen.push(s.offset));
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    for (let round = 0; round < 3; round++) {
      app.transaction(() => {
        for (let i = 0; i < 20; i++) insert.run(textOf(round * 100 + i, 1500), round);
      })();
      await r.sync();
      // After an awaited call, what the proxy reports is the worker's own state.
      const pos = r.shipper.pos()!;
      expect(r.replicas[0]!.pos()).toEqual(pos);
      expect(r.replicas[0]!.error).toBeUndefined();
      await litestreamRestores(replicaDir, dir, contentDigest(app));
    }
    expect(segmentsSeen.length).toBeGreaterThan(0);
    // The worker's requests are counted by the client the caller holds.
    expect(client.requestCounts().PUT).toBeGreaterThanOrEqual(1 + segmentsSeen.length);
    expect(r.replicas[0]!.name).toBe('file');
    expect(r.replicas[0]!.client).toBe(client);
    await r.close();
    await r.close(); // idempotent
    app.close();
  });

  it("uploads while the application's thread is blocked: the work is not on its event loop", async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const app = openSourceDb(dbPath);
    const r = await start({ dbPath, replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 10 }] });
    await r.sync();
    const generation = r.shipper.pos()!.generation;
    app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run(textOf(1, 3000), 1);
    const block = blockUntilNewSegment(replicaDir, generation, 5000);
    expect(block.timerFired, 'the thread was blocked').toBe(false);
    expect(block.appeared, 'a segment was uploaded while this thread was blocked').toBe(true);
    await r.sync();
    await litestreamRestores(replicaDir, dir, contentDigest(app));
    await r.close();
    app.close();
  });

  it('inline: true runs on the caller’s thread (nothing is uploaded while it is blocked) and still replicates', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const app = openSourceDb(dbPath);
    const r = await start({
      dbPath,
      replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 10 }],
      inline: true,
    });
    expect(r.inWorker).toBe(false);
    await r.sync();
    const generation = r.shipper.pos()!.generation;
    app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run(textOf(2, 3000), 2);
    const block = blockUntilNewSegment(replicaDir, generation, 1500);
    expect(block.appeared, 'in-process, nothing can run while the thread is blocked').toBe(false);
    await r.sync();
    await litestreamRestores(replicaDir, dir, contentDigest(app));
    await r.close();
    app.close();
  });

  it('a custom client (here a subclass) runs in-process: the worker could not rebuild it', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    openSourceDb(dbPath).close();
    class Mine extends FileReplicaClient {}
    const r = await start({ dbPath, replicas: [{ client: new Mine({ path: join(dir, 'replica') }) }] });
    expect(r.inWorker).toBe(false);
  });

  it('a replica that cannot be written: sync() rejects with the code and message of the in-process mode', async () => {
    const outcomes: { inWorker: boolean; error: unknown; replicaError: unknown }[] = [];
    for (const inline of [false, true]) {
      const dir = tmp();
      const dbPath = join(dir, 'app.db');
      const app = openSourceDb(dbPath);
      app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('x', 1);
      // A replica directory under a regular file: not writable by anyone, root included (ENOTDIR).
      writeFileSync(join(dir, 'not-a-dir'), 'x');
      const r = await start({
        dbPath,
        replicas: [{ name: 'backup', client: new FileReplicaClient({ path: join(dir, 'not-a-dir', 'replica') }), syncIntervalMs: 10 }],
        inline,
      });
      const error = await r.sync().then(
        () => undefined,
        (err: unknown) => err,
      );
      outcomes.push({ inWorker: r.inWorker, error, replicaError: r.replicas[0]!.error });
      await r.close().catch(() => undefined);
      app.close();
    }
    const [worker, inline] = outcomes;
    expect(worker!.inWorker).toBe(true);
    expect(inline!.inWorker).toBe(false);
    for (const o of outcomes) {
      expect(isReplicateError(o.error, 'IO'), String(o.error)).toBe(true);
      expect(o.replicaError).toBeInstanceOf(Error);
    }
    const shape = (e: unknown) =>
      (e as Error).message.replace(/\/tmp\/stn-worker-[^/]+/g, 'DIR').replace(/\b[0-9a-f]{16}\b/g, 'GENERATION');
    expect(worker!.error).toBeInstanceOf(ReplicateError);
    expect(shape(worker!.error)).toBe(shape(inline!.error));
    expect(shape(worker!.replicaError)).toBe(shape(inline!.replicaError));
    expect((worker!.replicaError as { code?: string }).code).toBe((inline!.replicaError as { code?: string }).code);
  });

  it('a database that cannot be opened: startReplication rejects as in-process, with the same code and message', async () => {
    const errors: unknown[] = [];
    for (const inline of [false, true]) {
      const dir = tmp();
      const dbPath = join(dir, 'app.db');
      writeFileSync(dbPath, Buffer.alloc(8192, 7)); // not a database
      errors.push(
        await startReplication({ dbPath, replicas: [{ client: new FileReplicaClient({ path: join(dir, 'replica') }) }], inline }).then(
          (r) => (open.push(r), undefined),
          (err: unknown) => err,
        ),
      );
    }
    const [worker, inline] = errors as ReplicateError[];
    expect(worker).toBeInstanceOf(ReplicateError);
    expect(worker!.code).toBe(inline!.code);
    expect(worker!.message.replace(/stn-worker-[^/]+/, '')).toBe(inline!.message.replace(/stn-worker-[^/]+/, ''));
    expect(Object.keys(worker!.details)).toEqual(Object.keys(inline!.details));
  });

  it('keeps the proxy current without calls: a database created later is opened and followed (waitForDatabase: false)', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const r = await start({
      dbPath,
      replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 10 }],
      monitorIntervalMs: 50,
      waitForDatabase: false,
    });
    expect(r.inWorker).toBe(true);
    expect(r.shipper.opened).toBe(false);
    expect(r.shipper.pos()).toBeUndefined();
    const app = openSourceDb(dbPath);
    app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('created later', 1);
    const deadline = performance.now() + 15_000;
    while (!(r.shipper.opened && r.replicas[0]!.pos() !== undefined) && performance.now() < deadline)
      await new Promise((res) => setTimeout(res, 20));
    expect(r.shipper.opened).toBe(true);
    expect(r.replicas[0]!.pos()?.generation).toBe(r.shipper.pos()?.generation);
    await r.sync();
    await litestreamRestores(replicaDir, dir, contentDigest(app));
    await r.close();
    app.close();
  });

  it('a worker that dies: an error event, and sync() and close() reject saying so', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    openSourceDb(dbPath).close();
    const r = await start({ dbPath, replicas: [{ client: new FileReplicaClient({ path: join(dir, 'replica') }) }] });
    const events: unknown[] = [];
    r.on('error', (e) => events.push(e.error));
    // A message the worker does not know is a bug there: it throws, and the thread ends.
    const worker = (r as unknown as { worker: { postMessage(m: unknown): void } }).worker;
    worker.postMessage({ t: 'no such message' });
    await expect(r.sync()).rejects.toThrow(/worker thread failed: .*unknown message/);
    expect(events.length).toBe(1);
    expect(isReplicateError(events[0], 'IO')).toBe(true);
    await expect(r.close()).rejects.toThrow(/worker thread failed/);
  });

  it('never keeps the process alive: a script that forgets close() exits, and its last await sync() completes first', () => {
    const entry = join(root, 'dist', 'src', 'index.js');
    expect(existsSync(entry), 'built into dist/ (npm run build)').toBe(true);
    const dir = tmp();
    const script = `
      import { startReplication, FileReplicaClient } from ${JSON.stringify(entry)};
      import Database from 'better-sqlite3';
      const db = new Database(${JSON.stringify(join(dir, 'app.db'))});
      db.pragma('journal_mode = WAL');
      db.exec('CREATE TABLE t (x)');
      const r = await startReplication({ dbPath: db.name, replicas: [{ client: new FileReplicaClient({ path: ${JSON.stringify(join(dir, 'replica'))} }) }] });
      db.prepare('INSERT INTO t VALUES (1)').run();
      await r.sync(); // nothing else keeps the loop alive here: the pending call must
      console.log('synced', r.inWorker, JSON.stringify(r.replicas[0].pos() ?? null));
    `;
    const t0 = performance.now();
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 30_000 });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^synced true \{"generation"/);
    expect(performance.now() - t0).toBeLessThan(20_000);
  });
});
