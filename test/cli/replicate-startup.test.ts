/**
 * `replicate` at start-up, as the seed's deployment runs it: the first boot has no database yet (the
 * application started by -exec creates it), the application may hold the write lock while we start, and
 * a replica that keeps failing must not make the log spin. Real processes, real exit codes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { holdWriteLock, sqliteCli, writeFromProcess } from '../helpers/app-process.js';
import { cleanEnv, stnReplicateBin } from '../../bench/lib/shared.js';
import { LoggedProcess, runLitestream } from '../helpers/oracle.js';
import { contentDigest, rowCount } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const require = createRequire(import.meta.url);
const bin = stnReplicateBin();
const tmp = tempDirs('stn-startup-');
const procs = closeAfterEach((p: LoggedProcess) => p.stop('SIGKILL'));
const undo = closeAfterEach((u: () => void) => u());
function spawnStn(args: string[]): LoggedProcess {
  const child = spawn(process.execPath, [bin, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const p = new LoggedProcess('', child);
  procs.push(p);
  return p;
}
async function bothRestore(replicaDir: string, dir: string): Promise<string[]> {
  const digests: string[] = [];
  for (const tool of ['ours', 'litestream'] as const) {
    const out = join(dir, `${tool}.db`);
    const r =
      tool === 'ours'
        ? await runCli(['restore', '-o', out, `file://${replicaDir}`])
        : await runLitestream(['restore', '-o', out, `file://${replicaDir}`]);
    expect(r.code, `${tool}: ${r.stderr}`).toBe(0);
    digests.push(contentDigest(out));
  }
  return digests;
}

describe('replicate at start-up', () => {
  it('-exec starts the application when the database does not exist yet, and replicates it once it appears', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'station.db');
    const replicaDir = join(dir, 'replica');
    // The application creates the database, writes, waits a moment, writes again and exits 0.
    const app = join(dir, 'app.cjs');
    writeFileSync(
      app,
      `const D = require(${JSON.stringify(require.resolve('better-sqlite3'))});
       const db = new D(${JSON.stringify(dbPath)}); db.pragma('journal_mode = WAL');
       db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)');
       db.prepare("INSERT INTO t (v, n) VALUES ('first boot', 1)").run();
       setTimeout(() => { db.prepare("INSERT INTO t (v, n) VALUES ('later', 2)").run(); db.close(); }, 1500);`,
    );
    const p = spawnStn(['replicate', '-exec', `${process.execPath} ${app}`, dbPath, `file://${replicaDir}`]);
    expect(await p.exit, p.tail()).toBe(0);
    const log = p.lines.join('\n');
    expect(log).toMatch(/does not exist yet/);
    expect(log).toMatch(/starting subprocess/);
    expect(rowCount(dbPath)).toBe(2);
    const live = contentDigest(dbPath);
    expect(await bothRestore(replicaDir, dir)).toEqual([live, live]);
  });

  it('-exec with an application that creates the database and exits at once: its rows are still shipped by the final sync', async () => {
    // The background wait looks for a missing database only now and then; an app faster than that used
    // to leave a database nobody replicated, and the command exited 0.
    const dir = tmp();
    const dbPath = join(dir, 'station.db');
    const replicaDir = join(dir, 'replica');
    const app = join(dir, 'app.cjs');
    writeFileSync(
      app,
      `const D = require(${JSON.stringify(require.resolve('better-sqlite3'))});
       const db = new D(${JSON.stringify(dbPath)}); db.pragma('journal_mode = WAL');
       db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)');
       db.prepare("INSERT INTO t (v, n) VALUES ('quick', 1)").run();
       db.close();`,
    );
    const p = spawnStn(['replicate', '-exec', `${process.execPath} ${app}`, dbPath, `file://${replicaDir}`]);
    expect(await p.exit, p.tail()).toBe(0);
    expect(rowCount(dbPath)).toBe(1);
    const live = contentDigest(dbPath);
    expect(await bothRestore(replicaDir, dir)).toEqual([live, live]);
  });

  it('library: a database created and written by another process between two looks of the background wait is shipped by close()', async () => {
    // Deterministic form of the test above: the application runs synchronously (execFileSync), so the
    // background wait cannot look again before close() begins.
    const { startReplication } = await import('../../src/replication.js');
    const { FileReplicaClient } = await import('../../src/client/file-client.js');
    const dir = tmp();
    const dbPath = join(dir, 'station.db');
    const replicaDir = join(dir, 'replica');
    const r = await startReplication({
      dbPath,
      replicas: [{ client: new FileReplicaClient({ path: replicaDir }) }],
      waitForDatabase: false,
      inline: true,
    });
    execFileSync(process.execPath, [
      '-e',
      `const D = require(${JSON.stringify(require.resolve('better-sqlite3'))});
       const db = new D(${JSON.stringify(dbPath)}); db.pragma('journal_mode = WAL');
       db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)');
       db.prepare("INSERT INTO t (v, n) VALUES ('between two looks', 1)").run();
       db.close();`,
    ]);
    expect(r.shipper.opened).toBe(false);
    await r.close();
    const live = contentDigest(dbPath);
    expect(await bothRestore(replicaDir, dir)).toEqual([live, live]);
  });

  it('an -exec command line that cannot be split is refused before anything is replicated', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    await sqliteCli(dbPath, 'PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER);');
    const p = spawnStn(['replicate', '-exec', "sh -c 'echo unterminated", dbPath, `file://${join(dir, 'replica')}`]);
    expect(await p.exit).toBe(1);
    const out = p.lines.join('\n');
    expect(out).toMatch(/-exec: unterminated ' quote/);
    expect(out).not.toMatch(/\bat .*\.js:\d+/); // no stack trace
    expect(existsSync(join(dir, 'replica')), 'nothing uploaded').toBe(false);
    expect(existsSync(join(dir, '.app.db-litestream')), 'no local state').toBe(false);
  });

  it('waits while the application holds the write lock at start-up, then replicates', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const writer = await holdWriteLock(dbPath); // a brand-new database: our tables need the write lock
    let released = false;
    undo.push(() => void (released || writer.release()));
    const p = spawnStn(['replicate', dbPath, `file://${replicaDir}`]);
    await p.waitForLog(/database is locked/, 0, 30_000);
    await new Promise((r) => setTimeout(r, 1500)); // longer than the busy timeout: it must keep waiting
    await writer.release();
    released = true;
    await p.waitForLog(/msg="snapshot written"/, 0, 30_000);
    await writeFromProcess('python', dbPath, 100, 5);
    expect(await p.stop('SIGTERM'), p.tail()).toBe(0);
    expect(
      p.lines.filter((l) => /database is locked/.test(l)),
      p.lines.join('\n'),
    ).toHaveLength(1);
    expect(rowCount(dbPath)).toBe(6);
    const live = contentDigest(dbPath);
    expect(await bothRestore(replicaDir, dir)).toEqual([live, live]);
  });

  it('a sync that keeps failing backs off and logs the same error once, then says it recovered', async () => {
    if (process.getuid?.() !== 0) return; // chattr +i needs root (CI runs as root)
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    await sqliteCli(dbPath, 'PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER);');
    await writeFromProcess('sqlite3', dbPath, 1, 1);
    const p = spawnStn(['replicate', dbPath, `file://${replicaDir}`]);
    await p.waitForLog(/msg="snapshot written"/);
    // The shadow WAL file cannot be written: every sync fails the same way.
    const meta = join(dir, '.app.db-litestream');
    const gen = readdirSync(join(meta, 'generations'))[0]!;
    const shadow = join(meta, 'generations', gen, 'wal', '00000000.wal');
    execFileSync('chattr', ['+i', shadow]);
    let locked = true;
    undo.push(() => void (locked && execFileSync('chattr', ['-i', shadow])));
    const from = p.lines.length;
    // A file event each; syncs are spaced by the sync-interval (1 s here), and failures back off.
    for (let i = 0; i < 20; i++) await writeFromProcess('sqlite3', dbPath, 10 + i, 1);
    await p.waitForLog(/sync failed/, from, 30_000);
    for (let i = 20; i < 40; i++) await writeFromProcess('sqlite3', dbPath, 10 + i, 1);
    const failures = p.lines.slice(from).filter((l) => /sync failed/.test(l));
    expect(failures.length, failures.join('\n')).toBe(1);
    expect(failures[0]).toMatch(/00000000\.wal|operation not permitted|EPERM/i);
    execFileSync('chattr', ['-i', shadow]);
    locked = false;
    await p.waitForLog(/sync recovered/, from, 60_000);
    expect(await p.stop('SIGTERM'), p.tail()).toBe(0);
    const live = contentDigest(dbPath);
    expect(rowCount(dbPath)).toBe(41);
    expect(await bothRestore(replicaDir, dir)).toEqual([live, live]);
  });
});
