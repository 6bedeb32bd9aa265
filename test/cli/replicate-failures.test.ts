/**
 * `stn-replicate replicate` as a real process when a replica fails: the final sync at SIGTERM says which
 * database and which replica were not brought up to date (exit 1), and `-exec` starts the application
 * although an unleased replica (`lease: false`) is unreachable, while the healthy replica keeps working.
 * A leased replica whose store is unreachable at start-up is another matter: its lease cannot be taken,
 * so nothing is replicated and the application is not started (exit 1).
 */
import { createRequire } from 'node:module';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { spawnBin } from '../helpers/cli.js';
import { lockDir } from '../helpers/lock-dir.js';
import { runLitestream, type LoggedProcess } from '../helpers/oracle.js';
import { contentDigest, rowCount, SOURCE_SCHEMA } from '../helpers/source-db.js';
import { SqliteShell, sqliteOnce } from '../helpers/sqlite-cli.js';
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const require = createRequire(import.meta.url);
const tmp = tempDirs('stn-replicate-fail-');
const undo = closeAfterEach((u: () => unknown) => u());
const procs = closeAfterEach((p: LoggedProcess) => p.stop('SIGKILL'));

async function setup() {
  const dir = tmp();
  const dbPath = join(dir, 'app.db');
  await sqliteOnce(dbPath, `PRAGMA journal_mode = WAL;\n${SOURCE_SCHEMA}\nINSERT INTO t (v, n) VALUES ('before', 0);`);
  return { dir, dbPath, replicaDir: join(dir, 'replica') };
}

function start(args: string[]): LoggedProcess {
  const p = spawnBin(args);
  procs.push(p);
  return p;
}

/** The index of the first log line matching every pattern, or -1. */
function lineWith(p: LoggedProcess, ...patterns: RegExp[]): number {
  return p.lines.findIndex((l) => patterns.every((re) => re.test(l)));
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe('replicate: a replica that fails', () => {
  it('a final sync that cannot upload names the database and the replica, and exits 1', async () => {
    const s = await setup();
    const p = start(['replicate', s.dbPath, `file://${s.replicaDir}`]);
    await p.waitForLog(/msg="snapshot written"/);
    const [gen] = readdirSync(join(s.replicaDir, 'generations'));
    // Nothing can be written to the replica from now on: no new generation, no wal directory, no segment.
    const genDir = join(s.replicaDir, 'generations', gen!);
    for (const d of [join(s.replicaDir, 'generations'), genDir, join(genDir, 'wal')]) if (existsSync(d)) undo.push(lockDir(d));
    // A running application (a long-lived shell) commits a row that cannot be uploaded any more.
    const app = SqliteShell.open(s.dbPath);
    undo.push(() => app.kill());
    await app.exec("INSERT INTO t (v, n) VALUES ('only local', 1);");
    expect(await p.stop('SIGTERM')).toBe(1);
    await app.close();
    const at = lineWith(
      p,
      /level=ERROR msg="final sync failed; these changes are only in the local database"/,
      new RegExp(` db=${esc(s.dbPath)} `),
      new RegExp(`error="sync of ${esc(s.dbPath)} incomplete; not uploaded to: file \\(${esc(s.replicaDir)}\\): .*(EPERM|EACCES)`),
    );
    expect(at, p.tail()).toBeGreaterThanOrEqual(0);
    expect(p.lines.at(-1)).toMatch(/msg="stn-replicate shut down" signal=SIGTERM/);
  });

  /** A config with a file replica and an s3 replica behind `proxy` (`s3Extra`: more keys of the latter). */
  function twoReplicas(s: { dir: string; dbPath: string; replicaDir: string }, proxy: FaultProxy, s3Extra: string[]): string {
    const cfg = join(s.dir, 'litestream.yml');
    writeFileSync(
      cfg,
      [
        'dbs:',
        `  - path: ${s.dbPath}`,
        '    replicas:',
        `      - url: file://${s.replicaDir}`,
        '        sync-interval: 10ms',
        '      - type: s3',
        '        bucket: unreachable',
        '        path: app',
        `        endpoint: ${proxy.endpoint}`,
        '        region: us-east-1',
        '        access-key-id: k',
        '        secret-access-key: s',
        ...s3Extra.map((l) => `        ${l}`),
        '',
      ].join('\n'),
    );
    return cfg;
  }

  function writingApp(s: { dir: string; dbPath: string }): string {
    const app = join(s.dir, 'app.cjs');
    writeFileSync(
      app,
      `const D=require(${JSON.stringify(require.resolve('better-sqlite3'))});console.log('app started');` +
        `const db=new D(${JSON.stringify(s.dbPath)});db.pragma('busy_timeout=5000');db.prepare("INSERT INTO t (v, n) VALUES ('from the app', 2)").run();db.close();`,
    );
    return app;
  }

  it('-exec starts the application although an unleased replica is unreachable; the other replica gets everything', async () => {
    const s = await setup();
    const proxy: FaultProxy = await startFaultProxy(inject('s3Endpoint'));
    undo.push(() => proxy.close());
    proxy.mode = 'drop'; // every connection to the store is cut
    // Unleased: a leased replica's unreachable store keeps everything from starting (the next test).
    const cfg = twoReplicas(s, proxy, ['lease: false']);
    const app = writingApp(s);
    const p = start(['replicate', '-config', cfg, '-exec', `${process.execPath} ${app}`]);
    // The app's exit ends the run; the final sync to the unreachable replica fails, so the code is 1.
    expect(await p.exit).toBe(1);
    const incomplete = lineWith(
      p,
      /level=ERROR msg="initial sync incomplete"/,
      new RegExp(` db=${esc(s.dbPath)} `),
      /not uploaded to: s3 \(/,
    );
    const started = lineWith(p, /^app started$/);
    expect(incomplete, p.tail(60)).toBeGreaterThanOrEqual(0);
    expect(started, p.tail(60)).toBeGreaterThan(incomplete);
    expect(
      lineWith(p, /msg="final sync failed; these changes are only in the local database"/, /not uploaded to: s3 \(/),
      p.tail(),
    ).toBeGreaterThan(started);
    expect(proxy.faults).toBeGreaterThan(0);
    // The healthy replica was not held back by the dead one: Litestream restores the app's row from it.
    const out = join(s.dir, 'restored.db');
    const r = await runLitestream(['restore', '-o', out, `file://${s.replicaDir}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(contentDigest(out)).toBe(contentDigest(s.dbPath));
    expect(rowCount(out)).toBe(2);
  });

  it('a leased replica whose store is unreachable at start-up: retried for one lease TTL, then nothing is replicated, the application does not start, exit 1', async () => {
    const s = await setup();
    const proxy: FaultProxy = await startFaultProxy(inject('s3Endpoint'));
    undo.push(() => proxy.close());
    proxy.mode = 'drop';
    // A short TTL: a store that fails at the first look is retried for one TTL (30 s by default).
    const cfg = twoReplicas(s, proxy, ['lease-ttl: 2s']);
    const app = writingApp(s);
    const p = start(['replicate', '-config', cfg, '-exec', `${process.execPath} ${app}`]);
    expect(await p.exit).toBe(1);
    expect(lineWith(p, /^app started$/)).toBe(-1);
    expect(
      lineWith(
        p,
        /^error: replica s3: taking the lease at s3:\/\/unreachable\/app: .* \(the store kept failing for \d+ms\); nothing was written, not replicating and not starting the application$/,
      ),
      p.tail(),
    ).toBeGreaterThanOrEqual(0);
    expect(proxy.faults).toBeGreaterThan(1); // tried more than once
    expect(
      lineWith(p, /msg="replica lease cannot be read or written; retrying .*until="2000ms without an answer, then an error"/),
      p.tail(),
    ).toBeGreaterThanOrEqual(0);
    // The file replica's lease was taken first and given back; nothing else was written there.
    expect(existsSync(join(s.replicaDir, 'generations'))).toBe(false);
    expect(rowCount(s.dbPath)).toBe(1);
  });
});
