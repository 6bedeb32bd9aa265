/**
 * Targeted, timed reproductions of the ways a shipper can lose a committed transaction without anyone
 * noticing (integrity_check says ok, the restore simply lacks rows). Each builds the exact state or
 * timing that random torture rounds rarely hit, and checks that both tools restore every committed row.
 */
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { collect, type WalSegmentInfo } from '../../src/client/replica-client.js';
import { decodeLz4Frame } from '../../src/internal/lz4-frame.js';
import { startReplication, type Replication } from '../../src/replication.js';
import { WalScanner } from '../../src/sqlite/wal-format.js';
import { runCli } from '../helpers/cli.js';
import { holdReadTransaction, sqliteCli } from '../helpers/app-process.js';
import { recordingLogger } from '../helpers/recording-logger.js';
import { ShipperDb } from '../../src/shipper/db-connection.js';
import { MetaDir } from '../../src/meta/meta-dir.js';
import { ShadowCursor } from '../../src/shipper/shadow-cursor.js';
import { runCheckpoint } from '../../src/shipper/checkpoint.js';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
import { runLitestream, startStnReplicator, type LoggedProcess } from '../helpers/oracle.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';
import { publishRestartWithoutHeader, writeRestartHeader, writeUnpublishedFrame } from '../helpers/wal-index.js';

const tmp = tempDirs('stn-safety-');
const procs = closeAfterEach((p: LoggedProcess) => p.stop('SIGKILL'));
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

async function setup() {
  const dir = tmp();
  const dbPath = join(dir, 'app.db');
  await sqliteCli(dbPath, 'PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER);');
  return { dir, dbPath, replicaDir: join(dir, 'replica') };
}

/** The ids in `t` of a database restored by each tool (each restore also passes integrity_check). */
async function restoredIds(replicaDir: string, dir: string): Promise<Record<'ours' | 'litestream', number[]>> {
  const result = {} as Record<'ours' | 'litestream', number[]>;
  for (const tool of ['ours', 'litestream'] as const) {
    const out = join(dir, `${tool}-${Math.random().toString(36).slice(2)}.db`);
    const r =
      tool === 'ours'
        ? await runCli(['restore', '-o', out, `file://${replicaDir}`])
        : await runLitestream(['restore', '-o', out, `file://${replicaDir}`]);
    expect(r.code, `${tool}: ${r.stderr}`).toBe(0);
    const db = new Database(out, { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true }), tool).toBe('ok');
      result[tool] = db.prepare('SELECT id FROM t ORDER BY id').pluck().all() as number[];
    } finally {
      db.close();
    }
  }
  return result;
}

/** Both tools restore exactly the rows `live` (the live database's ids). */
async function expectBothRestore(s: { replicaDir: string; dir: string }, live: number[]): Promise<void> {
  const restored = await restoredIds(s.replicaDir, s.dir);
  expect(restored.ours).toEqual(live);
  expect(restored.litestream).toEqual(live);
}

function liveIds(dbPath: string): number[] {
  const db = new Database(dbPath, { readonly: true });
  try {
    return db.prepare('SELECT id FROM t ORDER BY id').pluck().all() as number[];
  } finally {
    db.close();
  }
}

describe('shipper safety', () => {
  it('no WAL cycle is skipped when another connection commits and checkpoints inside the checkpoint sequence', async () => {
    const s = await setup();
    // The "other process": commits (restarting a fully backfilled WAL), checkpoints, commits again —
    // at every step of our checkpoint sequence, with no busy wait (where we hold a lock, it gets BUSY).
    const other = new Database(s.dbPath, { timeout: 0 });
    let nextId = 1_000_000;
    const steps: string[] = [];
    const inject = (step: string) => {
      steps.push(step);
      if (steps.length > 60) return; // enough: each injection's commits cause more checkpoints
      for (const action of ['insert', 'checkpoint', 'insert'] as const) {
        try {
          if (action === 'insert') {
            other.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, 0)').run(nextId, 'injected');
            nextId++;
          } else other.pragma('wal_checkpoint(PASSIVE)');
        } catch (err) {
          if (!/locked|busy/i.test(String(err))) throw err;
        }
      }
    };
    const r = await startReplication({
      dbPath: s.dbPath,
      replicas: [{ client: new FileReplicaClient({ path: s.replicaDir }), syncIntervalMs: 10 }],
      minCheckpointPageCount: 1,
      monitorIntervalMs: 0,
      checkpointStepHook: inject,
    });
    open.push(r);
    // The application's commits go through a connection of this process on purpose: this test is about
    // the checkpoint sequence alone (app-processes.test.ts covers applications in other processes).
    const app = new Database(s.dbPath, { timeout: 5000 });
    for (let i = 1; i <= 20; i++) {
      app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(i, 'y'.repeat(2000), i);
      await r.sync();
    }
    await r.close();
    app.close();
    other.close();
    expect(steps.length, 'the checkpoint sequence ran (and the injection with it)').toBeGreaterThan(0);
    expect(nextId, 'some injected commits succeeded').toBeGreaterThan(1_000_000);
    const live = liveIds(s.dbPath);
    await expectBothRestore(s, live);
  });

  it('a shadow WAL left with uncommitted frames by a SIGKILL mid-copy does not hide later commits', async () => {
    const s = await setup();
    const o = {
      dbPath: s.dbPath,
      replicaDir: s.replicaDir,
      syncInterval: '50ms',
      monitorInterval: '100ms',
      minCheckpointPageCount: 100_000,
    };
    let p = startStnReplicator(o);
    procs.push(p);
    await p.waitForLog(/msg="snapshot written"/);
    for (let i = 1; i <= 5; i++) await sqliteCli(s.dbPath, `INSERT INTO t (id, v, n) VALUES (${i}, 'committed before', ${i});`);

    // An application transaction big enough to spill uncommitted frames into the WAL, left open.
    const app = new Database(s.dbPath, { timeout: 10_000 });
    app.pragma('cache_size = 10');
    app.exec('BEGIN');
    const big = app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, -1)');
    for (let i = 0; i < 200; i++) big.run(500_000 + i, 'u'.repeat(3000));
    const walPath = `${s.dbPath}-wal`;
    const wal = new WalScanner();
    const walFd = openSync(walPath, 'r');
    const walBytes = Buffer.alloc(statSync(walPath).size);
    readSync(walFd, walBytes, 0, walBytes.length, 0);
    closeSync(walFd);
    wal.update(walBytes);
    const committedEnd = wal.result().committedSize;
    expect(walBytes.length, 'the open transaction spilled frames into the WAL').toBeGreaterThan(committedEnd + 10 * 4120);

    // The replicator has copied everything committed; kill it and leave the state a kill between
    // "write frames" and "cut back to the last commit" would leave: the uncommitted tail appended.
    const meta = join(s.dir, '.app.db-litestream');
    await waitUntil(() => shadowSize(meta) === committedEnd);
    await p.stop('SIGKILL');
    const shadowPath = currentShadow(meta);
    const fd = openSync(shadowPath, 'r+');
    writeSync(fd, walBytes.subarray(committedEnd), 0, walBytes.length - committedEnd, committedEnd);
    closeSync(fd);

    // The app rolls back and commits new rows at the real commit point, below the shadow's end.
    // The app's connection stays open throughout, so the WAL is not deleted meanwhile.
    app.exec('ROLLBACK');
    app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(6, 'after the rollback', 6);
    p = startStnReplicator(o);
    procs.push(p);
    await p.waitForLog(/msg=replicating/);
    for (let i = 7; i <= 10; i++) await sqliteCli(s.dbPath, `INSERT INTO t (id, v, n) VALUES (${i}, 'after the restart', ${i});`);
    expect(await p.stop('SIGTERM')).toBe(0);
    app.close();
    expect(p.lines.join('\n'), 'the restart repaired the shadow').toMatch(/cut back/);

    const live = liveIds(s.dbPath);
    expect(live).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    await expectBothRestore(s, live);
  });

  it('replicas upload only what an fsync made durable in the shadow WAL', async () => {
    const s = await setup();
    const segments: { index: number; end: number; durable: number }[] = [];
    const fsynced = new Map<number, number>(); // shadow index -> its size at the last fsync we saw
    const client = new FileReplicaClient({ path: s.replicaDir });
    const write = client.writeWalSegment.bind(client);
    client.writeWalSegment = async (pos, body, opts) => {
      const durable = fsynced.get(pos.index) ?? 0; // what was durable when the upload began
      const info = await write(pos, body, opts);
      segments.push({ index: pos.index, end: pos.offset + (await segmentLength(client, info)), durable });
      return info;
    };
    // No poll (its syncs fsync): copies come only from file-change notifications, which do not.
    const r = await startReplication({
      dbPath: s.dbPath,
      replicas: [{ client, syncIntervalMs: 10 }],
      monitorIntervalMs: 0,
      minCheckpointPageCount: 100_000,
    });
    open.push(r);
    const meta = r.shipper.meta;
    const fsyncShadow = meta.fsyncShadow.bind(meta);
    meta.fsyncShadow = async (generation, index) => {
      const size = statSync(meta.shadowWalPath(generation, index)).size;
      await fsyncShadow(generation, index);
      fsynced.set(index, Math.max(fsynced.get(index) ?? 0, size));
    };
    await r.sync(); // settle: what start-up copied (and fsynced) is uploaded
    const baseline = r.shipper.pos()!.offset;
    for (let i = 1; i <= 20; i++) {
      await sqliteCli(s.dbPath, `INSERT INTO t (id, v, n) VALUES (${i}, '${'z'.repeat(500)}', ${i});`);
      await new Promise((res) => setTimeout(res, 30));
    }
    await waitUntil(() => (r.replicas[0]!.pos()?.offset ?? 0) >= (r.shipper.pos()?.offset ?? 1));
    // Segments of bytes that only notification-triggered copies (no fsync) put in the shadow WAL.
    const background = segments.filter((seg) => seg.end > baseline);
    expect(background.length, 'segments uploaded by the background loop').toBeGreaterThan(0);
    for (const seg of background) expect(seg.end, `segment of index ${seg.index} ending at ${seg.end}`).toBeLessThanOrEqual(seg.durable);
  });

  it.each([
    ['the replicator is back before the application writes', false],
    // After a reboot the application often starts first: the rewritten tail is then longer than what the
    // replica holds when the replicator looks, and only the bytes themselves show the fork.
    ['the application writes before the replicator is back', true],
  ] as const)(
    'after a power cut that cost the local WAL and shadow a tail the replica has, a new generation: no history is mixed (%s)',
    async (_when, appFirst) => {
      const s = await setup();
      const o = {
        dbPath: s.dbPath,
        replicaDir: s.replicaDir,
        syncInterval: '20ms',
        monitorInterval: '100ms',
        minCheckpointPageCount: 100_000,
      };
      let p = startStnReplicator(o);
      procs.push(p);
      await p.waitForLog(/msg="snapshot written"/);
      // An application process whose connection is open at the "power cut" (killed, never closed), so
      // nobody checkpoints and deletes the WAL.
      const app = await holdReadTransaction(s.dbPath);
      for (let i = 1; i <= 5; i++) await sqliteCli(s.dbPath, `INSERT INTO t (id, v, n) VALUES (${i}, 'durable', ${i});`);
      const meta = join(s.dir, '.app.db-litestream');
      const walPath = `${s.dbPath}-wal`;
      await waitUntil(() => existsSync(meta) && shadowSize(meta) === committedWalSize(walPath));
      const durableWal = committedWalSize(walPath);
      for (let i = 6; i <= 8; i++) await sqliteCli(s.dbPath, `INSERT INTO t (id, v, n) VALUES (${i}, 'lost in the power cut', ${i});`);
      await waitUntil(() => shadowSize(meta) === committedWalSize(walPath));
      const target = committedWalSize(walPath);
      await waitUntilAsync(async () => (await lastUploadedEnd(s.replicaDir)) >= target);
      await p.stop('SIGKILL');
      await app.kill();
      // What the power cut leaves: the WAL and the shadow without the last transactions' frames (neither
      // had been fsynced, in this model); the replica keeps what it was sent.
      truncateSync(walPath, durableWal);
      truncateSync(currentShadow(meta), durableWal);

      const writeAgain = async () => {
        for (let i = 6; i <= 9; i++) await sqliteCli(s.dbPath, `INSERT INTO t (id, v, n) VALUES (${i}, 'after the power cut', ${i});`);
      };
      // (The application's connection stays open until the replicator is up, or closing it would
      // checkpoint and delete the WAL, which is another path: a new generation for the changed database.)
      const appAgain = appFirst ? await holdReadTransaction(s.dbPath) : undefined;
      if (appFirst) await writeAgain();
      p = startStnReplicator(o);
      procs.push(p);
      await p.waitForLog(/msg=replicating/);
      await appAgain?.kill();
      if (!appFirst) await writeAgain();
      await p.waitForLog(/msg="replica diverged from local state/);
      expect(await p.stop('SIGTERM'), p.tail()).toBe(0);
      const live = liveIds(s.dbPath);
      expect(live).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      await expectBothRestore(s, live);
      for (const tool of ['ours', 'litestream'] as const) {
        const out = join(s.dir, `v-${tool}.db`);
        const r =
          tool === 'ours'
            ? await runCli(['restore', '-o', out, `file://${s.replicaDir}`])
            : await runLitestream(['restore', '-o', out, `file://${s.replicaDir}`]);
        expect(r.code, r.stderr).toBe(0);
        const db = new Database(out, { readonly: true });
        expect(db.prepare("SELECT count(*) FROM t WHERE v = 'lost in the power cut'").pluck().get(), tool).toBe(0);
        db.close();
      }
      expect(readdirSync(join(s.replicaDir, 'generations')), 'the lineage broke: a new generation').toHaveLength(2);
    },
  );

  it('a WAL restart before the checkpoint gets its lock is followed, never checkpointed over', async () => {
    const s = await setup();
    const app = new Database(s.dbPath, { timeout: 5000 });
    app.pragma('wal_autocheckpoint = 0');
    app.exec('CREATE TABLE u (x)');
    for (let i = 0; i < 20; i++) app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(i + 1, 'row', i);
    const db = ShipperDb.open(s.dbPath, { busyTimeoutMs: 1000 });
    const meta = new MetaDir(join(s.dir, '.app.db-litestream'));
    await meta.ensure();
    const cursor = new ShadowCursor(meta, `${s.dbPath}-wal`, s.dbPath, 2 ** 32, recordingLogger(), { position() {}, generation() {} });
    try {
      app.pragma('wal_checkpoint(PASSIVE)'); // the application's checkpoint: the WAL is fully backfilled
      db.tryWithWriteLock(100, () => cursor.newGenerationLocked(db, 'start')); // our read transaction: slot 0
      const generation = cursor.current!.generation;
      // An application commit restarts the WAL (allowed by a slot-0 reader) before our next checkpoint.
      app.prepare("INSERT INTO u VALUES ('committed-in-the-new-cycle')").run();
      const cycle = readFileSync(`${s.dbPath}-wal`).readUInt32BE(16); // salt-1 of the new cycle
      // During the checkpoint's unlocked moment, another process takes the write lock, then commits.
      db.stepHook = (step) => {
        if (step !== 'unlocked') return;
        spawn(
          process.execPath,
          [
            '-e',
            `const D = require(${JSON.stringify(require.resolve('better-sqlite3'))}); const db = new D(${JSON.stringify(s.dbPath)}, { timeout: 2000 }); db.exec('BEGIN IMMEDIATE'); require('fs').writeFileSync(${JSON.stringify(join(s.dir, 'locked'))}, '1'); const until = Date.now() + 150; while (Date.now() < until); db.exec("INSERT INTO u VALUES ('T')"); db.exec('COMMIT'); db.close();`,
          ],
          { stdio: 'inherit' },
        );
        const wait = new Int32Array(new SharedArrayBuffer(4));
        while (!existsSync(join(s.dir, 'locked'))) Atomics.wait(wait, 0, 0, 5);
      };
      runCheckpoint(db, cursor, 'PASSIVE', 100);
      await new Promise((r) => setTimeout(r, 300));
      // What the next sync does: follow whatever restart is pending.
      db.tryWithWriteLock(1000, () => cursor.settleLocked(db));
      // That cycle must be in the history as an index of its own, with its commit (later page images
      // carry the row too, so look at the index whose header is that cycle's).
      const dirOf = meta.shadowWalDir(cursor.current!.generation);
      const shadows = readdirSync(dirOf).map((f) => readFileSync(join(dirOf, f)));
      const ofCycle = shadows.filter((b) => b.readUInt32BE(16) === cycle);
      const held = ofCycle.some((b) => b.length > 32 && b.includes('committed-in-the-new-cycle'));
      expect(
        held || cursor.current!.generation !== generation,
        'the new cycle reached the shadow WAL, or continuity was declared lost',
      ).toBe(true);
      expect(held, 'here nothing stopped the shadow from following the restart').toBe(true);
    } finally {
      db.close();
      app.close();
    }
  });

  it.each([
    ['a later commit overwrites them', 1, false],
    ['a later commit overwrites part of them', 12, false],
    ['our checkpoint restarts the WAL over them', 12, true],
  ] as const)(
    'frames a writer killed mid-commit left in the WAL (SQLite discards them) are never copied: %s',
    async (_what, phantomRows, checkpointAfter) => {
      const s = await setup();
      const start = (minCheckpointPageCount: number) =>
        startReplication({
          dbPath: s.dbPath,
          replicas: [{ client: new FileReplicaClient({ path: s.replicaDir }), syncIntervalMs: 10 }],
          minCheckpointPageCount,
          monitorIntervalMs: 0,
        });
      const r = await start(100_000);
      open.push(r);
      // An application connection stays open throughout, so SQLite never runs recovery on the WAL.
      const app = new Database(s.dbPath, { timeout: 5000 });
      for (let i = 1; i <= 5; i++) app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(i, 'committed', i);
      await r.sync();
      // The phantom: a transaction written into the WAL after the last commit, valid frames and commit flag
      // included, never published in the wal-index (its writer was killed in between). Made in a scratch
      // copy that continues the same WAL, then written over the real WAL's tail.
      const walPath = `${s.dbPath}-wal`;
      const end = committedWalSize(walPath);
      const scratch = join(s.dir, 'scratch.db');
      writeFileSync(scratch, readFileSync(s.dbPath));
      writeFileSync(`${scratch}-wal`, readFileSync(walPath).subarray(0, end));
      const other = new Database(scratch);
      other.pragma('wal_autocheckpoint = 0');
      other.transaction(() => {
        for (let i = 0; i < phantomRows; i++)
          other.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, -1)').run(900 + i, `PHANTOM-MARKER ${'p'.repeat(3000)}`);
      })();
      const phantom = readFileSync(`${scratch}-wal`).subarray(end, committedWalSize(`${scratch}-wal`));
      other.pragma('journal_mode = DELETE');
      other.close();
      expect(phantom.length).toBeGreaterThan(0);
      const fd = openSync(walPath, 'r+');
      writeSync(fd, phantom, 0, phantom.length, end);
      closeSync(fd);
      expect(app.prepare('SELECT count(*) FROM t WHERE n = -1').pluck().get(), 'SQLite does not see them').toBe(0);
      await r.sync(); // its frames look committed; SQLite's commit point says otherwise
      if (checkpointAfter) {
        await r.close();
        open.splice(0);
        const again = await start(1); // a checkpoint that restarts the WAL
        open.push(again);
        await again.sync();
        app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(6, 'after the restart', 6);
        await again.sync();
        await again.close();
      } else {
        app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(6, 'after the phantom', 6); // over the phantom
        await r.sync();
        await r.close();
      }
      open.splice(0);
      app.close();
      const live = liveIds(s.dbPath);
      expect(live).toEqual([1, 2, 3, 4, 5, 6]);
      await expectBothRestore(s, live);
      // Not in any object of the replica, at any point of its history.
      const client = new FileReplicaClient({ path: s.replicaDir });
      for (const g of await client.generations()) {
        for (const seg of await collect(client.walSegments(g))) {
          const chunks: Buffer[] = [];
          for await (const c of decodeLz4Frame()(await client.walSegmentReader(seg))) chunks.push(Buffer.from(c));
          expect(Buffer.concat(chunks).includes('PHANTOM-MARKER'), `segment ${g}/${seg.index}/${seg.offset}`).toBe(false);
        }
      }
      expect(await client.generations(), 'nothing to break: the history goes on').toHaveLength(1);
    },
  );

  it('a SIGKILL right after our checkpoint restarted the WAL keeps the generation, however far the new cycle grows before the next start', async () => {
    // The replicator's proof that the old cycle ended where the shadow ends is its read transaction, held
    // from the checkpoint until the new index begins. Once it is killed in between, a long enough new
    // cycle overwrites the place start-up would look for that proof: it must have been written down.
    const s = await setup();
    const { app, insert } = keptApp(s); // the application, running on through the crash
    for (let id = 1; id <= 5; id++) insert(id);
    await replicatorKilledAt(
      s,
      'committed',
      () => {
        for (let id = 6; id <= 10; id++) insert(id);
      },
      () => {
        for (let id = 11; id <= 80; id++) insert(id); // the new cycle grows well past where the old one ended
        // The last index of the old cycle (the WAL restarted): what start-up would have had to check.
        const wal = readFileSync(`${s.dbPath}-wal`);
        const dir = shadowDir(join(s.dir, '.app.db-litestream'));
        const old = readdirSync(dir)
          .sort()
          .map((f) => readFileSync(join(dir, f)))
          .filter((b) => !b.subarray(0, 32).equals(wal.subarray(0, 32)))
          .at(-1)!;
        expect(old.length, 'the old cycle had frames').toBeGreaterThan(32);
        expect(committedWalSize(`${s.dbPath}-wal`), 'the new cycle outgrew the old one').toBeGreaterThan(old.length);
      },
    );
    const p = await replicateWhile(s, () => {
      for (let id = 81; id <= 85; id++) insert(id);
    });
    app.close();
    expect(p.lines.filter((l) => /new generation|clearing generation/.test(l))).toEqual([]);
    const client = new FileReplicaClient({ path: s.replicaDir });
    expect(await client.generations(), 'one unbroken history').toHaveLength(1);
    const live = liveIds(s.dbPath);
    expect(live).toHaveLength(85);
    await expectBothRestore(s, live);
  });

  it("a restart an application's commit made inside our checkpoint is noted before our seq write, which may wait for the lock", async () => {
    const s = await setup();
    const app = new Database(s.dbPath, { timeout: 5000 });
    app.pragma('wal_autocheckpoint = 0');
    const insert = (id: number) => app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(id, 'row', id);
    const seq = () => app.prepare('SELECT seq FROM _litestream_seq WHERE id = 1').pluck().get() as number | undefined;
    for (let id = 1; id <= 5; id++) insert(id);
    let armed = false;
    let seqBefore: number | undefined;
    const seen: string[] = [];
    const r = await startReplication({
      dbPath: s.dbPath,
      replicas: [{ client: new FileReplicaClient({ path: s.replicaDir }), syncIntervalMs: 10 }],
      minCheckpointPageCount: 1,
      monitorIntervalMs: 0,
      checkpointStepHook: (step) => {
        if (!armed) return;
        if (step === 'unlocked' && seen.length === 0) {
          // Right after our checkpoint released the lock: an application's commit restarts the WAL.
          seqBefore = seq();
          insert(100);
          seen.push('application commit');
        } else if (step === 'restart-noted' && seen.length > 0) {
          seen.push(seq() === seqBefore ? 'noted before our seq write' : 'noted after our seq write');
        } else if (step === 'committed' && seen.length > 0) seen.push('our seq write');
      },
    });
    open.push(r);
    await r.sync();
    armed = true;
    insert(6);
    await r.sync();
    expect(seen.slice(0, 3)).toEqual(['application commit', 'noted before our seq write', 'our seq write']);
    await r.close();
    open.splice(0);
    app.close();
    const live = liveIds(s.dbPath);
    await expectBothRestore(s, live);
  });

  it('at start-up, a restart SQLite published but whose header no writer wrote is not taken for an empty cycle (the one before may have been committed and checkpointed)', async () => {
    const s = await setup();
    const { app, insert } = keptApp(s); // keeps the -shm: SQLite runs no recovery
    for (let id = 1; id <= 5; id++) insert(id);
    // Killed right after its checkpoint's restart: the next index holds that cycle's header alone.
    await replicatorKilledAt(
      s,
      'committed',
      () => {
        for (let id = 6; id <= 10; id++) insert(id);
      },
      () => undefined,
    );
    // While it is dead: the application commits in that cycle and checkpoints all of it, then a writer
    // restarts the WAL and stops before writing the new header (killed, or its write failed).
    for (let id = 11; id <= 20; id++) insert(id);
    restartWithoutHeader(app, s.dbPath);
    const p = await replicateWhile(s, () => {
      for (let id = 21; id <= 25; id++) insert(id);
    });
    app.close();
    const live = liveIds(s.dbPath);
    expect(live).toHaveLength(25);
    await expectBothRestore(s, live);
    expect(
      p.lines.some((l) => /new generation.*header was never written/.test(l)),
      p.lines.join('\n'),
    ).toBe(true);
  });

  it("at start-up, a new cycle's first frames that a killed writer never published (our own seq write, killed inside its commit) do not end the generation", async () => {
    const s = await setup();
    const { app, insert } = keptApp(s); // keeps the -shm: SQLite runs no recovery
    for (let id = 1; id <= 30; id++) insert(id); // a long first cycle: its frames stay past the shorter ones' ends
    // Killed right after a checkpoint backfilled a short cycle, before its seq write: the shadow ends that cycle.
    await replicatorKilledAt(
      s,
      'unlocked',
      () => {
        for (let id = 31; id <= 33; id++) insert(id);
      },
      () => undefined,
    );
    // The seq write the kill interrupted, at its worst: the WAL restarted in the wal-index, the new cycle's
    // header and commit frame written, not yet published (the kill came during the fsync before that).
    // (`app` stays open throughout: SQLite's recovery would otherwise count that frame as committed.)
    restartWithoutHeader(app, s.dbPath, (salts) =>
      writeUnpublishedFrame(`${s.dbPath}-wal`, salts, 2, Number(app.pragma('page_count', { simple: true }))),
    );
    const p = await replicateWhile(s, () => {
      for (let id = 34; id <= 40; id++) insert(id);
    });
    app.close();
    expect(p.lines.filter((l) => /new generation|clearing generation/.test(l))).toEqual([]);
    expect(p.lines.some((l) => /wal restarted while stopped; continuing the generation/.test(l))).toBe(true);
    const client = new FileReplicaClient({ path: s.replicaDir });
    expect(await client.generations(), 'one unbroken history').toHaveLength(1);
    const live = liveIds(s.dbPath);
    expect(live).toHaveLength(40);
    await expectBothRestore(s, live);
  });

  it("a SIGKILL inside our checkpoint's seq write, after it restarted the WAL and before the restart was noted, keeps the generation", async () => {
    // The cycle that ends is the longest so far, so the WAL file ends where the shadow ends: nothing past
    // it proves the old cycle ended there (oldCycleEndedAtShadow). The note written before the seq write does.
    const s = await setup();
    const meta = join(s.dir, '.app.db-litestream');
    const { app, insert } = await appWithReplicatorKilledAt(s, 'seq-written', (kept) => {
      const wal = readFileSync(`${s.dbPath}-wal`);
      const shadow = readFileSync(currentShadow(meta));
      expect(wal.subarray(0, 32).equals(shadow.subarray(0, 32)), 'the WAL restarted, not yet followed').toBe(false);
      expect(wal.length, 'the WAL file ends where the shadow ends').toBe(shadow.length);
      expect(existsSync(join(meta, 'seq-write.json')), 'the seq write was announced').toBe(true);
      for (let id = 41; id <= 45; id++) kept.insert(id); // the application goes on in the new cycle
    });
    const p = await replicateWhile(s, () => {
      for (let id = 46; id <= 50; id++) insert(id);
    });
    app.close();
    expect(
      p.lines.filter((l) => /new generation|clearing generation/.test(l)),
      p.lines.join('\n'),
    ).toEqual([]);
    expect(p.lines.some((l) => /restarted by the replicator's own checkpoint/.test(l))).toBe(true);
    const client = new FileReplicaClient({ path: s.replicaDir });
    expect(await client.generations(), 'one unbroken history').toHaveLength(1);
    const live = liveIds(s.dbPath);
    expect(live).toHaveLength(50);
    await expectBothRestore(s, live);
  });

  it("a SIGKILL after announcing the seq write, before making it: an application's commit that restarts the WAL meanwhile is not taken for it", async () => {
    const s = await setup();
    const meta = join(s.dir, '.app.db-litestream');
    const { app, insert } = await appWithReplicatorKilledAt(s, 'seq-noted', () => {
      expect(existsSync(join(meta, 'seq-write.json')), 'the seq write was announced').toBe(true);
    });
    insert(41); // the application's commit restarts the WAL: its page is the new cycle's first frame
    const p = await replicateWhile(s, () => {
      for (let id = 42; id <= 45; id++) insert(id);
    });
    app.close();
    expect(
      p.lines.some((l) => /new generation.*the seq write announced before the stop did not begin its cycle/.test(l)),
      p.lines.join('\n'),
    ).toBe(true);
    const live = liveIds(s.dbPath);
    expect(live).toHaveLength(45);
    await expectBothRestore(s, live);
  });

  it('a SIGKILL inside the seq write after the new header and before its frame (the header fsync) keeps the generation: the file proves it', async () => {
    const s = await setup();
    const { app, insert } = await appWithReplicatorKilledAt(s, 'seq-noted');
    // What the interrupted seq write left: the restart published in the wal-index, the new header in the file.
    restartWithoutHeader(app, s.dbPath, (salts) => void writeRestartHeader(`${s.dbPath}-wal`, salts));
    const p = await replicateWhile(s, () => {
      for (let id = 41; id <= 45; id++) insert(id);
    });
    app.close();
    expect(
      p.lines.filter((l) => /new generation|clearing generation/.test(l)),
      p.lines.join('\n'),
    ).toEqual([]);
    expect(p.lines.some((l) => /wal restarted while stopped; continuing the generation/.test(l))).toBe(true);
    const client = new FileReplicaClient({ path: s.replicaDir });
    expect(await client.generations(), 'one unbroken history').toHaveLength(1);
    const live = liveIds(s.dbPath);
    expect(live).toHaveLength(45);
    await expectBothRestore(s, live);
  });

  it("an application's TRUNCATE while the replicator starts (before its read transaction) is waited out, not fatal", async () => {
    const s = await setup();
    await sqliteCli(s.dbPath, "INSERT INTO t (id, v, n) VALUES (1, 'before the start', 1);");
    const app = new Database(s.dbPath, { timeout: 5000 }); // keeps the WAL from being deleted
    app.pragma('wal_autocheckpoint = 0');
    app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(2, 'in the wal', 2);
    let truncated = '';
    const r = await startReplication({
      dbPath: s.dbPath,
      replicas: [{ client: new FileReplicaClient({ path: s.replicaDir }), syncIntervalMs: 10 }],
      monitorIntervalMs: 0,
      checkpointStepHook: (step) => {
        if (step === 'start-prepared' && !truncated) truncated = JSON.stringify(app.pragma('wal_checkpoint(TRUNCATE)'));
      },
    });
    open.push(r);
    expect(truncated, 'the TRUNCATE emptied the WAL between the header and the decision').toMatch(/"busy":0/);
    app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(3, 'after the start', 3);
    await r.sync();
    await r.close();
    open.splice(0);
    app.close();
    const live = liveIds(s.dbPath);
    expect(live).toEqual([1, 2, 3]);
    await expectBothRestore(s, live);
  });
});

/**
 * The application for the start-up tests: a connection kept open in this process (it keeps the -shm, so
 * SQLite runs no recovery when the replicator opens the database), no automatic checkpoints, and rows
 * large enough to fill a page each.
 */
function keptApp(s: { dbPath: string }): { app: Database.Database; insert: (id: number) => void } {
  const app = new Database(s.dbPath, { timeout: 5000 });
  app.pragma('wal_autocheckpoint = 0');
  const insert = (id: number) => void app.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)').run(id, 'r'.repeat(1500), id);
  return { app, insert };
}

/**
 * With the WAL fully backfilled (checked), a writer restarts it in the wal-index and stops before
 * publishing anything more (publishRestartWithoutHeader); `then` gets the new cycle's salts, to write
 * what that writer wrote before it stopped. SQLite then reads the wal-index as an empty new cycle.
 */
function restartWithoutHeader(app: Database.Database, dbPath: string, then?: (salts: Buffer) => void): void {
  const ckpt = app.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
  expect(ckpt[0]!.log, 'fully backfilled').toBe(ckpt[0]!.checkpointed);
  const salts = publishRestartWithoutHeader(`${dbPath}-shm`);
  then?.(salts);
  expect(app.pragma('wal_checkpoint(NOOP)'), 'SQLite reads the wal-index as an empty new cycle').toEqual([
    { busy: 0, log: 0, checkpointed: 0 },
  ]);
}

/**
 * For the seq write tests: the kept application writes 3 rows, a replicator child starts, the application
 * writes 37 more (the checkpoint they bring is stopped dead at `step`, in a cycle longer than any before,
 * so that the WAL file ends where it ends), `meanwhile` runs (given the application), and the replicator
 * is SIGKILLed.
 */
async function appWithReplicatorKilledAt(
  s: { dir: string; dbPath: string; replicaDir: string },
  step: string,
  meanwhile: (kept: ReturnType<typeof keptApp>) => void = () => undefined,
): Promise<ReturnType<typeof keptApp>> {
  const kept = keptApp(s);
  for (let id = 1; id <= 3; id++) kept.insert(id);
  await replicatorKilledAt(
    s,
    step,
    () => {
      for (let id = 4; id <= 40; id++) kept.insert(id);
    },
    () => meanwhile(kept),
  );
  return kept;
}

/** The CLI replicator started on the database; `write` runs once it replicates; stopped with SIGTERM (exit 0). */
async function replicateWhile(s: { dbPath: string; replicaDir: string }, write: () => void): Promise<LoggedProcess> {
  const p = startStnReplicator({ dbPath: s.dbPath, replicaDir: s.replicaDir, syncInterval: '10ms' });
  procs.push(p);
  await p.waitForLog(/msg=replicating/);
  write();
  expect(await p.stop('SIGTERM')).toBe(0);
  procs.splice(0);
  return p;
}

function shadowDir(meta: string): string {
  const gen = readdirSync(join(meta, 'generations'))[0]!;
  return join(meta, 'generations', gen, 'wal');
}
function currentShadow(meta: string): string {
  const dir = shadowDir(meta);
  return join(
    dir,
    readdirSync(dir)
      .filter((f) => f.endsWith('.wal'))
      .sort()
      .at(-1)!,
  );
}
function shadowSize(meta: string): number {
  return statSync(currentShadow(meta)).size;
}
async function waitUntil(cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > until) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 20));
  }
}
function committedWalSize(path: string): number {
  const scanner = new WalScanner();
  scanner.update(readFileSync(path));
  return scanner.result().committedSize;
}
/** The end offset of the last WAL segment in a file replica (from its name and decoded size). */
async function lastUploadedEnd(replicaDir: string): Promise<number> {
  const client = new FileReplicaClient({ path: replicaDir });
  const gens = await client.generations();
  if (gens.length !== 1) return 0;
  const segs = await collect(client.walSegments(gens[0]!));
  const last = segs.at(-1);
  return last ? last.offset + (await segmentLength(client, last)) : 0;
}
async function segmentLength(client: FileReplicaClient, info: WalSegmentInfo): Promise<number> {
  let n = 0;
  for await (const chunk of decodeLz4Frame()(await client.walSegmentReader(info))) n += chunk.length;
  return n;
}
async function waitUntilAsync(cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > until) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Runs a replicator (the library, in a child process) until, after `write` (the application's writes
 * that make it checkpoint), its checkpoint's seq write has restarted the WAL; stops it dead right there
 * (its thread blocks at that step, as a process descheduled at that instant would), runs `meanwhile`,
 * and SIGKILLs it.
 */
async function replicatorKilledAt(
  s: { dir: string; dbPath: string; replicaDir: string },
  step: string,
  write: () => void,
  meanwhile: () => void,
): Promise<void> {
  const entry = join(import.meta.dirname, '..', '..', 'dist', 'src', 'index.js');
  expect(existsSync(entry), 'built into dist/ (npm run build)').toBe(true);
  const stuck = join(s.dir, 'stuck');
  const script = `
    import { startReplication, FileReplicaClient } from ${JSON.stringify(entry)};
    import { writeFileSync } from 'node:fs';
    let armed = false;
    const r = await startReplication({
      dbPath: ${JSON.stringify(s.dbPath)},
      replicas: [{ client: new FileReplicaClient({ path: ${JSON.stringify(s.replicaDir)} }), syncIntervalMs: 10 }],
      minCheckpointPageCount: 1,
      monitorIntervalMs: 10,
      checkpointStepHook: (step) => {
        if (!armed || step !== ${JSON.stringify(step)}) return;
        writeFileSync(${JSON.stringify(stuck)}, '1');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      },
    });
    await r.sync();
    armed = true;
    console.log('armed');
    setInterval(() => {}, 1000); // replication alone does not keep a process alive
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => (String(d).includes('armed') ? resolve() : undefined));
      child.once('exit', (code) => reject(new Error(`the replicator exited (${code}) before it was armed`)));
    });
    write();
    await waitUntil(() => existsSync(stuck));
    meanwhile();
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}
