/**
 * The application's own `PRAGMA wal_checkpoint`, in every mode, from separate processes (the `sqlite3`
 * shell): short-lived writers that exit, and a long-lived application shell. The replicator runs in
 * this process. Each test checks what SQLite answered (busy, log, checkpointed), what happened to the
 * `-wal` file, and that both tools restore exactly what the application committed.
 *
 * The physics: the replicator holds a read transaction for its whole run (so SQLite cannot restart the
 * WAL over frames it has not copied). While it runs, an application's PASSIVE checkpoint backfills only
 * up to that reader's snapshot, and RESTART and TRUNCATE cannot finish (busy = 1) and leave the WAL as it
 * is: that is the design, not a failure. Only with the replicator stopped can the application truncate
 * the WAL, and then continuity with the replica is lost for whatever it wrote meanwhile.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { startReplication, type Replication } from '../../src/replication.js';
import { WalScanner } from '../../src/sqlite/wal-format.js';
import { expectBothRestore } from '../helpers/both-tools.js';
import { recordingLogger } from '../helpers/recording-logger.js';
import { contentDigest, rowCount, SOURCE_SCHEMA } from '../helpers/source-db.js';
import { SqliteShell, sqliteOnce } from '../helpers/sqlite-cli.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-app-ckpt-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));
const shells = closeAfterEach((s: SqliteShell) => s.kill());

async function setup() {
  const dir = tmp();
  const dbPath = join(dir, 'app.db');
  const walPath = `${dbPath}-wal`;
  const replicaDir = join(dir, 'replica');
  await sqliteOnce(dbPath, `PRAGMA journal_mode = WAL;\n${SOURCE_SCHEMA}`);
  const logger = recordingLogger();
  const newGenerations = () => logger.lines.filter((l) => l.msg === 'new generation').map((l) => l.fields?.generation);
  const snapshots: { generation: string; index: number }[] = [];
  const start = async () => {
    const r = await startReplication({
      dbPath,
      replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 10 }],
      minCheckpointPageCount: 1000, // the replicator's own checkpoints stay out of the way
      logger,
    });
    r.on('snapshot', (e) => snapshots.push(e));
    open.push(r);
    return r;
  };
  /** A short-lived writer process: inserts `rows` rows tagged `tag` and exits. */
  const writer = (rows: number, tag: number) => sqliteOnce(dbPath, insertSql(rows, tag));
  /** Frames of the WAL's current cycle up to its last commit: what SQLite reports as `log`. */
  const walFrames = () => {
    const scan = new WalScanner();
    scan.update(readFileSync(walPath));
    const r = scan.result();
    return r.header ? (r.committedSize - 32) / (r.header.pageSize + 24) : 0;
  };
  const restoresEqualSource = async () => rowCount((await expectBothRestore(replicaDir, dir, contentDigest(dbPath))).ours);
  return { dir, dbPath, walPath, replicaDir, logger, newGenerations, snapshots, start, writer, walFrames, restoresEqualSource };
}

function insertSql(rows: number, tag: number): string {
  return `INSERT INTO t (v, n) SELECT printf('%d-%d ', ${tag}, value) || hex(randomblob(400)), ${tag} FROM generate_series(1, ${rows});`;
}

function appShell(dbPath: string): SqliteShell {
  const s = SqliteShell.open(dbPath);
  shells.push(s);
  return s;
}

describe("the application's checkpoints", () => {
  it('while the replicator runs: PASSIVE backfills, RESTART and TRUNCATE stay busy and leave the WAL alone; nothing is lost and the generation stays', async () => {
    const s = await setup();
    const r = await s.start();
    const gen = r.shipper.pos()!.generation;
    const app = appShell(s.dbPath);
    let rows = 0;
    for (let round = 0; round < 4; round++) {
      await s.writer(20, round);
      const passive = await app.checkpoint('PASSIVE');
      // PASSIVE never waits and never fails for readers; it backfills what no reader still needs, which
      // depends on where the replicator's read snapshot is (in flux with the shipper's design): ≤ log.
      expect(passive.busy).toBe(0);
      expect(passive.log).toBe(s.walFrames());
      expect(passive.checkpointed).toBeGreaterThanOrEqual(0);
      expect(passive.checkpointed).toBeLessThanOrEqual(passive.log);

      await app.exec(insertSql(5, 50 + round));
      for (const mode of ['RESTART', 'TRUNCATE'] as const) {
        const walSize = statSync(s.walPath).size;
        const row = await app.checkpoint(mode);
        // Designed: the replicator's read transaction keeps every writer from restarting the WAL.
        expect(row.busy, mode).toBe(1);
        expect(row.log, mode).toBe(s.walFrames());
        expect(row.checkpointed, mode).toBeLessThanOrEqual(row.log);
        expect(statSync(s.walPath).size, `${mode} must not truncate the WAL under the replicator`).toBe(walSize);
      }
      await s.writer(5, 80 + round);
      rows += 30;
      await r.sync();
      expect(await s.restoresEqualSource()).toBe(rows);
    }
    // The application exits; the WAL stays (the replicator's connections are still open) and so does the generation.
    await app.close();
    await s.writer(3, 99);
    expect(existsSync(s.walPath)).toBe(true);
    await r.sync();
    expect(await s.restoresEqualSource()).toBe(rows + 3);
    expect(r.shipper.pos()!.generation).toBe(gen);
    expect(s.newGenerations()).toEqual([gen]);
  });

  it('with the replicator stopped, TRUNCATE empties the WAL; at its next start nothing is lost and any new generation says why', async () => {
    const s = await setup();
    // A long-lived application keeps the database open, so the WAL is not deleted when the writers or
    // the replicator close their connections: the truncation is what the replicator meets.
    const app = appShell(s.dbPath);
    const r = await s.start();
    await s.writer(20, 1);
    await r.sync();
    const first = r.shipper.pos()!.generation;
    await r.close();
    open.pop();

    await app.exec(insertSql(7, 2)); // committed while nobody replicates
    const truncate = await app.checkpoint('TRUNCATE');
    expect(truncate).toEqual({ busy: 0, log: 0, checkpointed: 0 });
    expect(statSync(s.walPath).size).toBe(0);
    await s.writer(4, 3); // a new WAL cycle

    const snapshotsBefore = s.snapshots.length;
    const logsBefore = s.logger.lines.length;
    const r2 = await s.start();
    await s.writer(2, 4);
    await r2.sync();
    // Nothing lost, by either tool: the data is the hard requirement.
    expect(await s.restoresEqualSource()).toBe(33);
    // The 7 rows of tag 2 were checkpointed into the database file and the WAL that held them is gone:
    // only a new snapshot can carry them, whatever the rule for generations.
    expect(s.snapshots.length).toBeGreaterThan(snapshotsBefore);
    // The generation rule is in flux (the shipper is being rewritten): today a truncated WAL starts a
    // new generation. What must hold either way: a new generation is logged with a reason, and the log
    // since the restart says that the WAL is what broke continuity.
    const current = r2.shipper.pos()!.generation;
    if (current !== first) {
      const since = s.logger.lines.slice(logsBefore);
      const logged = since.find((l) => l.msg === 'new generation' && l.fields?.generation === current);
      expect(logged?.fields?.reason, 'the new generation names its reason').toMatch(/\S/);
      const why = since
        .filter((l) => l.level !== 'debug')
        .map((l) => `${l.msg} ${typeof l.fields?.reason === 'string' ? l.fields.reason : ''}`);
      expect(why.join('\n')).toMatch(/wal (header changed|truncated|restarted)|no wal header/i);
    }
    await app.close();
  });
});
