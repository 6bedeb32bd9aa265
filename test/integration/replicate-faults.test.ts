/**
 * Faults while replicating: an unwritable replica, a replica that stays down, a WAL deleted while the
 * database is closed (the application's own checkpoints are in application-checkpoints.test.ts). No
 * crash, clear errors, a new generation only where continuity is really lost, and every restore (ours
 * and Litestream's) equal to the source.
 */
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import type { Logger } from '../../src/logger.js';
import { startReplication, type Replication } from '../../src/replication.js';
import { expectBothRestore } from '../helpers/both-tools.js';
import { runCli } from '../helpers/cli.js';
import { lockDir } from '../helpers/lock-dir.js';
import { recordingLogger } from '../helpers/recording-logger.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-faults-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));
const unlock = closeAfterEach((u: () => void) => u());

function setup(opts: { minCheckpointPageCount?: number; maxShadowWalBytes?: number; logger?: Logger } = {}) {
  const dir = tmp();
  const dbPath = join(dir, 'app.db');
  const replicaDir = join(dir, 'replica');
  const app = openSourceDb(dbPath);
  const start = async () => {
    const r = await startReplication({
      dbPath,
      replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 10 }],
      ...opts,
    });
    open.push(r);
    return r;
  };
  const insert = (n: number, tag: number) => {
    const stmt = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    app.transaction(() => {
      for (let i = 0; i < n; i++) stmt.run(textOf(tag * 1000 + i, 800), tag);
    })();
  };
  const restoresEqualSource = () => expectBothRestore(replicaDir, dir, contentDigest(app));
  return { dir, dbPath, replicaDir, app, start, insert, restoresEqualSource };
}

describe('replication faults', () => {
  it('an unwritable replica: sync says which replica failed, the app is not blocked, and it catches up', async () => {
    const s = setup();
    const r = await s.start();
    s.insert(10, 1);
    await r.sync();
    const gen = r.shipper.pos()!.generation;
    const walDir = join(s.replicaDir, 'generations', gen, 'wal');
    const undo = lockDir(walDir);
    unlock.push(undo);
    for (let i = 0; i < 20; i++) s.insert(5, 100 + i); // the app keeps writing
    const err = await r.sync().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(String((err as Error)?.message)).toMatch(/sync of .*app\.db incomplete; not uploaded to: file \(.*replica\): .*(EPERM|EACCES)/);
    unlock.pop()!();

    await r.sync();
    await s.restoresEqualSource();
    expect(readdirSync(join(s.replicaDir, 'generations'))).toEqual([gen]);
  });

  it('a replica that stays down cannot fill the disk: at the shadow WAL limit, a loud error and a new generation; it catches up after', async () => {
    const logger = recordingLogger();
    const limit = 400_000;
    const s = setup({ minCheckpointPageCount: 20, maxShadowWalBytes: limit, logger });
    const r = await s.start();
    const generations: { generation: string; reason: string }[] = [];
    r.on('generation', (e) => generations.push(e));
    s.insert(10, 1);
    await r.sync();
    const first = r.shipper.pos()!.generation;
    const shadowDir = join(s.dir, '.app.db-litestream', 'generations');
    const shadowBytes = () => {
      let n = 0;
      for (const g of readdirSync(shadowDir))
        for (const f of readdirSync(join(shadowDir, g, 'wal'))) n += statSync(join(shadowDir, g, 'wal', f)).size;
      return n;
    };
    // Nothing can be uploaded: no new segment in this generation, no new generation directory.
    unlock.push(lockDir(join(s.replicaDir, 'generations', first, 'wal')));
    unlock.push(lockDir(join(s.replicaDir, 'generations')));
    // The replica has tried and failed (its upload timer runs every 10 ms; the loop below would not
    // give it the chance: a shipper sync does its file work synchronously).
    s.insert(10, 99);
    await r.shipper.sync();
    for (let t = 0; t < 500 && r.replicas[0]!.error === undefined; t++) await new Promise((res) => setTimeout(res, 10));
    expect(String(r.replicas[0]!.error)).toMatch(/EPERM|EACCES/);
    let peak = 0;
    for (let i = 0; i < 60 && r.shipper.shadowWalUsage().limitReached === 0; i++) {
      s.insert(10, 100 + i); // about 40 KB a batch
      await r.shipper.sync();
      peak = Math.max(peak, shadowBytes());
    }
    const usage = r.shipper.shadowWalUsage();
    expect(usage.limitReached).toBe(1);
    // Bounded: never more than the limit plus the batch that crossed it (and one index being started).
    expect(peak).toBeLessThan(limit + 200_000);
    expect(shadowBytes()).toBeLessThan(limit / 2);
    const error = logger.lines.find((l) => l.level === 'error' && l.msg.startsWith('shadow wal limit reached'));
    expect(error?.fields?.behind).toMatch(/file \(.*replica.*(EPERM|EACCES)/);
    // Exactly one new generation, for this reason, and the shipper is on it.
    expect(generations).toHaveLength(1);
    expect(generations[0]!.reason).toMatch(
      /^shadow wal limit reached \(\d+ bytes >= 400000\) while replicas were behind: file \(.*replica.*(EPERM|EACCES)/,
    );
    expect(r.shipper.pos()!.generation).toBe(generations[0]!.generation);
    expect(generations[0]!.generation).toMatch(/^[0-9a-f]{16}$/);

    // The application was never blocked, and once the replica is writable it catches up in the new generation.
    s.insert(10, 999);
    for (const u of unlock.splice(0)) u();
    await r.sync();
    await s.restoresEqualSource();
    expect(readdirSync(join(s.replicaDir, 'generations')).sort()).toEqual([first, generations[0]!.generation].sort());
  });

  it('a WAL deleted while the database was closed starts a new generation, with the reason logged', async () => {
    const s = setup();
    const r = await s.start();
    s.insert(10, 1);
    await r.sync();
    await r.close();
    open.pop();
    s.app.close();
    rmSync(`${s.dbPath}-wal`, { force: true });
    const reasons: string[] = [];
    const app2 = openSourceDb(s.dbPath);
    const r2 = await startReplication({
      dbPath: s.dbPath,
      replicas: [{ client: new FileReplicaClient({ path: s.replicaDir }), syncIntervalMs: 10 }],
      logger: { debug() {}, info() {}, error() {}, warn: (m, f) => reasons.push(`${m} ${JSON.stringify(f)}`) },
    });
    open.push(r2);
    app2.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('after', 2);
    await r2.sync();
    expect(reasons.join('\n')).toMatch(/cannot determine last wal position, clearing generation/);
    expect(readdirSync(join(s.replicaDir, 'generations'))).toHaveLength(2);
    const out = join(s.dir, 'after.db');
    expect((await runCli(['restore', '-o', out, `file://${s.replicaDir}`])).code).toBe(0);
    expect(contentDigest(out)).toBe(contentDigest(app2));
    app2.close();
  });

  it('a database in a read-only directory fails with a clear error', async () => {
    const dir = tmp('stn-faults-ro-');
    const sub = join(dir, 'data');
    mkdirSync(sub);
    const app = openSourceDb(join(sub, 'app.db'));
    app.close();
    unlock.push(lockDir(sub));
    await expect(
      startReplication({ dbPath: join(sub, 'app.db'), replicas: [{ client: new FileReplicaClient({ path: join(dir, 'replica') }) }] }),
    ).rejects.toThrow(/opening database .*app\.db: unable to open database file \(its directory .*data is not writable/);
  });
});
