/**
 * The embedded API: an app writes with its own better-sqlite3 connection, `await sync()` returns, and
 * the replica restores — with the real Litestream and with ours — to exactly that state.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { restore } from '../../src/replica/restore.js';
import { startReplication, type Replication } from '../../src/replication.js';
import { expectBothRestore, expectSameListings } from '../helpers/both-tools.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-embedded-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

describe('embedded replication', () => {
  it('await sync() means the replica restores to exactly what was committed, by both tools', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const app = openSourceDb(dbPath);
    const r = await startReplication({
      dbPath,
      replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 10 }],
      minCheckpointPageCount: 20,
    });
    open.push(r);
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    for (let round = 0; round < 6; round++) {
      app.transaction(() => {
        for (let i = 0; i < 15; i++) insert.run(textOf(round * 100 + i, 2000), round);
      })();
      if (round % 2 === 1) app.prepare('DELETE FROM t WHERE id % 7 = ?').run(round);
      await r.sync();
      await expectBothRestore(replicaDir, dir, contentDigest(app));
    }
    const wal = readdirSync(join(replicaDir, 'generations', r.shipper.pos()!.generation, 'wal'));
    expect(new Set(wal.map((f) => f.slice(0, 8))).size).toBeGreaterThanOrEqual(3); // several WAL indexes
    await r.close();
    app.close();
    // Litestream lists what we wrote exactly as we do.
    await expectSameListings([`file://${replicaDir}`]);
  });

  it('sync() returns once the replica holds what was committed when it was called, however fast the app keeps writing', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const app = openSourceDb(dbPath);
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    let shipper: { sync(): Promise<void> } | undefined;
    let uploads = 0;
    // Every upload finds the application further ahead: it commits and the shipper copies it before the
    // upload returns (so the replica is never caught up with the live end, as under a heavy write load).
    class Busy extends FileReplicaClient {
      override async writeWalSegment(...args: Parameters<FileReplicaClient['writeWalSegment']>) {
        const info = await super.writeWalSegment(...args);
        if (shipper && ++uploads < 50) {
          insert.run(textOf(uploads, 2000), uploads);
          await shipper.sync();
        }
        return info;
      }
    }
    const client = new Busy({ path: replicaDir });
    const named = { name: 'file', client };
    const r = await startReplication({ dbPath, replicas: [{ client, syncIntervalMs: 60_000 }], monitorIntervalMs: 0 });
    open.push(r);
    await r.sync();
    insert.run('committed before sync()', -1);
    shipper = r.shipper;
    await r.sync(); // must not chase the live end
    // Chasing the live end would take all 49 (one more commit after each upload).
    expect(uploads, 'uploads during sync()').toBeLessThan(5);
    shipper = undefined;
    // The replica holds the state sync() was called for.
    const out = join(dir, 'at-sync.db');
    await restore([named], { outputPath: out, restoreMarker: false });
    const restored = new Database(out, { readonly: true });
    expect(restored.prepare('SELECT count(*) FROM t WHERE n = -1').pluck().get()).toBe(1);
    restored.close();
    await r.close();
    app.close();
  });

  it.each([1024, 65536])('replicates a database with %i-byte pages that both tools restore', async (pageSize) => {
    const dir = tmp();
    const dbPath = join(dir, 'pages.db');
    const replicaDir = join(dir, 'replica');
    const setup = new Database(dbPath);
    setup.pragma(`page_size = ${pageSize}`);
    setup.pragma('journal_mode = WAL');
    setup.close();
    const app = openSourceDb(dbPath);
    expect(app.pragma('page_size', { simple: true })).toBe(pageSize);
    const r = await startReplication({
      dbPath,
      replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 10 }],
      minCheckpointPageCount: 8,
    });
    open.push(r);
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    for (let round = 0; round < 5; round++) {
      app.transaction(() => {
        for (let i = 0; i < 20; i++) insert.run(textOf(round * 100 + i, 1500), round);
      })();
      await r.sync();
    }
    await expectBothRestore(replicaDir, dir, contentDigest(app));
    await r.close();
    app.close();
  });

  it('never makes the app on the same thread wait on a lock held across an await (many checkpoints)', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'busy.db');
    const replicaDir = join(dir, 'replica');
    const app = openSourceDb(dbPath);
    app.pragma('busy_timeout = 200'); // a lock held across an await would surface as SQLITE_BUSY
    // In-process: the app and the shipper on one thread is what this is about (in a worker thread, the
    // app's commits may wait for the shipper's write lock, as for any other connection's).
    const r = await startReplication({
      dbPath,
      replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 1 }],
      minCheckpointPageCount: 4,
      inline: true,
    });
    expect(r.inWorker).toBe(false);
    open.push(r);
    let checkpoints = 0;
    r.on('checkpoint', () => checkpoints++);
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    // Writes until several checkpoints ran between them (how many writes that takes depends on the
    // machine's speed: the shipper syncs at most every 15 ms); a lock held across an await would have
    // made one of these inserts throw SQLITE_BUSY.
    let writes = 0;
    while (checkpoints < 8 && writes < 20_000) {
      insert.run(textOf(writes, 3000), writes++); // ~1 page each: a checkpoint every few writes
      await new Promise((res) => setImmediate(res)); // let the shipper run between the app's writes
    }
    await r.sync();
    expect(checkpoints, `after ${writes} writes`).toBeGreaterThanOrEqual(8);
    await expectBothRestore(replicaDir, dir, contentDigest(app));
    await r.close();
    app.close();
  });
});
