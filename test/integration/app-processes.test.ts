/**
 * The application is other processes that open the database, write and exit (a Node app, python, the
 * `sqlite3` CLI, cron jobs). The replicator must keep its locks on the database the whole time — closing
 * any descriptor of the file in our process drops every POSIX lock we hold on it, and then the last
 * application connection to close checkpoints and deletes the `-wal`, which ends the generation.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { locksHeldBy, sqliteCli, WRITER_KINDS, writeFromProcess } from '../helpers/app-process.js';
import { runLitestream, startStnReplicator, type LoggedProcess } from '../helpers/oracle.js';
import { contentDigest, rowCount } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-app-procs-');
const procs = closeAfterEach((p: LoggedProcess) => p.stop('SIGKILL'));

async function setup() {
  const dir = tmp();
  const dbPath = join(dir, 'app.db');
  await sqliteCli(
    dbPath,
    'PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER); CREATE INDEX t_n ON t (n);',
  );
  return { dir, dbPath, replicaDir: join(dir, 'replica') };
}

describe('application processes that come and go', () => {
  it('100 writer processes in a row keep one generation, and both tools restore every row', async () => {
    const s = await setup();
    const p = startStnReplicator({ dbPath: s.dbPath, replicaDir: s.replicaDir, syncInterval: '100ms', monitorInterval: '100ms' });
    procs.push(p);
    await p.waitForLog(/msg="snapshot written"/);
    const ino = statSync(s.dbPath).ino;
    // Right after the snapshot (which reads the database file) the replicator still holds its locks.
    expect(await locksHeldBy(p.pid!, ino), 'locks of the replicator on the database after the first snapshot').not.toEqual([]);

    const writers = 100;
    for (let i = 0; i < writers; i++) await writeFromProcess(WRITER_KINDS[i % WRITER_KINDS.length]!, s.dbPath, i * 10 + 1, 10);
    expect(await locksHeldBy(p.pid!, ino), 'locks of the replicator on the database after the writers').not.toEqual([]);
    // And on the -shm, which it reads at start-up through a descriptor it keeps (closing one would drop them).
    const shmIno = statSync(`${s.dbPath}-shm`).ino;
    expect(await locksHeldBy(p.pid!, shmIno), 'locks of the replicator on the -shm after the writers').not.toEqual([]);
    expect(await p.stop('SIGTERM')).toBe(0);

    const log = p.lines.join('\n');
    expect(
      p.lines.filter((l) => /new generation/.test(l)),
      log,
    ).toHaveLength(1);
    expect(log).not.toMatch(/replaced or deleted|sync failed|final sync failed/);
    expect(readdirSync(join(s.replicaDir, 'generations'))).toHaveLength(1);

    const live = contentDigest(s.dbPath);
    for (const tool of ['ours', 'litestream'] as const) {
      const out = join(s.dir, `${tool}.db`);
      const r =
        tool === 'ours'
          ? await runCli(['restore', '-o', out, `file://${s.replicaDir}`])
          : await runLitestream(['restore', '-o', out, `file://${s.replicaDir}`]);
      expect(r.code, r.stderr).toBe(0);
      expect(rowCount(out), tool).toBe(writers * 10);
      expect(contentDigest(out), tool).toBe(live);
    }
  }, 120_000);
});
