/**
 * `stn-replicate replicate` as a real process: final sync on SIGTERM, -exec exit codes and signal
 * forwarding. Every replica it writes is restored by the real Litestream.
 */
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnBin } from '../helpers/cli.js';
import { type LoggedProcess, runLitestream, startStnReplicator } from '../helpers/oracle.js';
import { waitForUpload } from '../helpers/fixtures.js';
import { contentDigest, openSourceDb, rowCount } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const require = createRequire(import.meta.url);
const tmp = tempDirs('stn-replicate-');
const procs = closeAfterEach((p: LoggedProcess) => p.stop('SIGKILL'));
function spawnStn(args: string[], env: Record<string, string> = {}): LoggedProcess {
  const p = spawnBin(args, env);
  procs.push(p);
  return p;
}
async function litestreamRestore(replicaDir: string, out: string): Promise<string> {
  const r = await runLitestream(['restore', '-o', out, `file://${replicaDir}`]);
  expect(r.code, r.stderr).toBe(0);
  return contentDigest(out);
}

describe('replicate DB_PATH REPLICA_URL', () => {
  it('uploads what the app writes and makes a final sync on SIGTERM', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const app = openSourceDb(dbPath);
    const p = spawnStn(['replicate', dbPath, `file://${replicaDir}`]);
    await p.waitForLog(/msg="snapshot written"/);
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    for (let i = 0; i < 200; i++) insert.run(`row ${i}`, i);
    // No waiting for an upload: SIGTERM must flush what is committed.
    expect(await p.stop('SIGTERM')).toBe(0);
    expect(p.lines.join('\n')).toMatch(/shut down/);
    expect(await litestreamRestore(replicaDir, join(dir, 'out.db'))).toBe(contentDigest(app));
    app.close();
  });

  it('waits for a database that does not exist yet, saying so', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'later.db');
    const p = spawnStn(['replicate', dbPath, `file://${join(dir, 'replica')}`]);
    await p.waitForLog(/database does not exist yet; waiting for it/);
    const app = openSourceDb(dbPath);
    app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('hello', 1);
    await p.waitForLog(/msg="snapshot written"/);
    expect(await p.stop('SIGINT')).toBe(0);
    expect(rowCount(await restoredPath(dir))).toBe(1);
    app.close();
  });

  it('fails clearly for a file that is not a SQLite database, and for bad arguments', async () => {
    const dir = tmp();
    const notDb = join(dir, 'notes.txt');
    writeFileSync(notDb, 'just some text, long enough to not be an empty database file '.repeat(100));
    const p = spawnStn(['replicate', notDb, `file://${join(dir, 'replica')}`]);
    expect(await p.exit).toBe(1);
    expect(p.lines.join('\n')).toMatch(/opening database .*notes\.txt: .*not a database/);
    const q = spawnStn(['replicate', notDb]);
    expect(await q.exit).toBe(1);
    expect(q.lines.join('\n')).toMatch(/must specify at least one replica URL/);
  });
});

/**
 * The config is a FIFO, so the process is held at a known point of its start-up (reading the config)
 * for as long as the test likes: a SIGTERM sent then must not be lost. Under load, start-up (module
 * loading, config, the first open) takes a second or more, and an orchestrator that stops a replicator
 * it just restarted lands exactly there.
 */
describe('a signal during start-up', () => {
  async function heldAtConfig(args: (config: string) => string[]): Promise<{ p: LoggedProcess; release: (text: string) => void }> {
    const dir = tmp();
    const fifo = join(dir, 'litestream.yml');
    execFileSync('mkfifo', [fifo]);
    const p = spawnStn(args(fifo));
    // The process's open() of the FIFO waits for a writer; a writer's non-blocking open succeeds only
    // once a reader is there, so when it does, the process is inside start-up, reading its config.
    const deadline = Date.now() + 20_000;
    let fd: number | undefined;
    while (fd === undefined) {
      try {
        fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
        if (Date.now() > deadline) throw new Error(`the process never opened ${fifo}:\n${p.tail()}`);
        await sleep(5);
      }
    }
    const writer = fd;
    return {
      p,
      release: (text) => {
        try {
          writeSync(writer, text);
        } catch (err) {
          // A process that the signal ended has no reader left on the FIFO.
          if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
        } finally {
          closeSync(writer);
        }
      },
    };
  }

  it('replicate: starts, then makes the final sync and exits 0', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const app = openSourceDb(dbPath);
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    for (let i = 0; i < 50; i++) insert.run(`row ${i}`, i);
    const { p, release } = await heldAtConfig((config) => ['replicate', '-config', config]);
    process.kill(p.pid!, 'SIGTERM');
    release(`dbs:\n  - path: ${dbPath}\n    replicas:\n      - path: ${replicaDir}\n`);
    expect(await p.exit, p.tail()).toBe(0);
    expect(p.lines.join('\n')).toMatch(/signal received, shutting down/);
    expect(await litestreamRestore(replicaDir, join(dir, 'out.db'))).toBe(contentDigest(app));
    app.close();
  });

  it('any other command: ends by the signal, as without a handler', async () => {
    const dir = tmp();
    const { p, release } = await heldAtConfig((config) => ['restore', '-config', config, '-o', join(dir, 'out.db'), join(dir, 'app.db')]);
    process.kill(p.pid!, 'SIGTERM');
    release(`dbs:\n  - path: ${join(dir, 'app.db')}\n    replicas:\n      - path: ${join(dir, 'replica')}\n`);
    expect(await p.exit, p.tail()).toBe(null); // killed by SIGTERM
    expect(existsSync(join(dir, 'out.db'))).toBe(false);
  });
});

/**
 * Every line is one JSON object whose first keys are time (RFC 3339 UTC with milliseconds), level and
 * msg, as Litestream's slog JSON handler writes them; each of `expected` is an INFO line with (at least)
 * the given fields and values; the last line is the shutdown.
 */
function expectJsonLog(lines: string[], expected: Record<string, unknown>[], during: { from: number; to: number }): void {
  const records = lines
    .filter((l) => l.trim() !== '')
    .map((l) => {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`not a JSON log line: ${l}`);
      }
      expect(Object.keys(rec).slice(0, 3), l).toEqual(['time', 'level', 'msg']);
      expect(rec.time, l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      const t = Date.parse(rec.time as string);
      expect(t >= during.from && t <= during.to, `${l}: a time during the run`).toBe(true);
      expect(['INFO', 'WARN', 'ERROR'], l).toContain(rec.level); // the default level: no DEBUG
      return rec;
    });
  for (const want of expected) {
    const found = records.find((r) => r.msg === want.msg);
    expect(found, `no "${String(want.msg)}" line in:\n${lines.join('\n')}`).toBeDefined();
    expect(found).toMatchObject({ level: 'INFO', ...want });
  }
  expect(records.at(-1)?.msg).toBe('stn-replicate shut down');
}

async function restoredPath(dir: string): Promise<string> {
  const out = join(dir, `restored-${Math.random().toString(36).slice(2)}.db`);
  await litestreamRestore(join(dir, 'replica'), out);
  return out;
}

describe('replicate -exec', () => {
  it("exits with the app's exit code after a final sync", async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const app = openSourceDb(dbPath);
    app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('before', 1);
    const script = `const D=require(${JSON.stringify(require.resolve('better-sqlite3'))});const db=new D(${JSON.stringify(dbPath)});db.prepare("INSERT INTO t (v, n) VALUES ('from the app', 2)").run();db.close();process.exit(3)`;
    writeFileSync(join(dir, 'app.cjs'), script);
    const p = spawnStn(['replicate', '-exec', `${process.execPath} ${join(dir, 'app.cjs')}`, dbPath, `file://${join(dir, 'replica')}`]);
    expect(await p.exit).toBe(3);
    expect(rowCount(await restoredPath(dir))).toBe(2);
    app.close();
  });

  it.each([
    ['SIGTERM', 0],
    ['SIGINT', 7],
  ] as const)('forwards %s to the app, waits for it, syncs, and exits with its code (%i)', async (signal, code) => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    openSourceDb(dbPath).close();
    const marker = join(dir, 'got-signal');
    const script = [
      `const D=require(${JSON.stringify(require.resolve('better-sqlite3'))});`,
      `const db=new D(${JSON.stringify(dbPath)});db.pragma('busy_timeout=5000');`,
      `let n=0;const t=setInterval(()=>db.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('tick',n++),20);`,
      `for(const [s,c] of [['SIGTERM',0],['SIGINT',7]])process.on(s,()=>{clearInterval(t);db.prepare("INSERT INTO t (v, n) VALUES ('last words', -1)").run();db.close();require('fs').writeFileSync(${JSON.stringify(marker)},s);process.exit(c)});`,
      `console.log('app started');`, // only once the handlers are in place
    ].join('');
    writeFileSync(join(dir, 'app.cjs'), script);
    const p = spawnStn(['replicate', '-exec', `${process.execPath} ${join(dir, 'app.cjs')}`, dbPath, `file://${join(dir, 'replica')}`]);
    await p.waitForLog(/app started/);
    expect(await p.stop(signal)).toBe(code);
    expect(readFileSync(marker, 'utf8')).toBe(signal);
    const restored = await restoredPath(dir);
    expect(contentDigest(restored)).toBe(contentDigest(dbPath));
    const db = new Database(restored, { readonly: true });
    expect(db.prepare('SELECT count(*) FROM t WHERE n = -1').pluck().get(), 'the last words, written after the signal').toBe(1);
    db.close();
  });
});

describe('replicate -config', () => {
  it('replicates every database of the config with JSON logs', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'a.db');
    const app = openSourceDb(dbPath);
    const p = startStnReplicator({ dbPath, replicaDir: join(dir, 'replica'), syncInterval: '10ms' });
    procs.push(p);
    await p.waitForLog(/msg="snapshot written"/);
    const after = p.lines.length;
    app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('x', 1);
    await waitForUpload(p, dbPath, after);
    expect(await litestreamRestore(join(dir, 'replica'), join(dir, 'o.db'))).toBe(contentDigest(app));
    expect(await p.stop('SIGINT')).toBe(0);
    app.close();

    const cfg = join(dir, 'json.yml');
    writeFileSync(
      cfg,
      `logging:\n  type: json\ndbs:\n  - path: ${join(dir, 'b.db')}\n    replicas:\n      - url: file://${join(dir, 'replica-b')}\n`,
    );
    openSourceDb(join(dir, 'b.db')).close();
    const from = Date.now();
    const q = spawnStn(['replicate', '-config', cfg]);
    await q.waitForLog(/snapshot written/);
    expect(await q.stop('SIGTERM')).toBe(0);
    const during = { from, to: Date.now() };
    expectJsonLog(
      q.lines,
      [
        { msg: 'new generation', db: join(dir, 'b.db'), generation: expect.stringMatching(/^[0-9a-f]{16}$/), reason: expect.any(String) },
        {
          msg: 'snapshot written',
          replica: 'file',
          position: expect.stringMatching(/^[0-9a-f]{16}\/00000000:\d+$/),
          sz: expect.any(Number),
          elapsed: expect.stringMatching(/^\d+ms$/),
        },
        { msg: 'replicating', db: join(dir, 'b.db'), replicas: `file:${join(dir, 'replica-b')}` },
        { msg: 'signal received, shutting down', signal: 'SIGTERM' },
        { msg: 'stn-replicate shut down', signal: 'SIGTERM' },
      ],
      during,
    );
  });

  it('runs exec: from the config like -exec, and logs to stderr only with logging.stderr: true', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'e.db');
    openSourceDb(dbPath).close();
    const app = join(dir, 'app.cjs');
    writeFileSync(
      app,
      `const D=require(${JSON.stringify(require.resolve('better-sqlite3'))});const db=new D(${JSON.stringify(dbPath)});` +
        `db.prepare("INSERT INTO t (v, n) VALUES ('from the app', 1)").run();db.close();console.log('app output');process.exit(5)`,
    );
    const cfg = join(dir, 'exec.yml');
    writeFileSync(
      cfg,
      `exec: ${process.execPath} ${app}\nlogging:\n  stderr: true\ndbs:\n  - path: ${dbPath}\n    replicas:\n      - url: file://${join(dir, 'replica')}\n`,
    );
    const p = spawnStn(['replicate', '-config', cfg]);
    expect(await p.exit).toBe(5);
    // stdout is the application's (inherited); our log is on stderr.
    expect(p.stdout).toBe('app output\n');
    expect(p.stderr).toMatch(new RegExp(`level=INFO msg="starting subprocess" command="${process.execPath} ${app}"`));
    expect(p.stderr).toMatch(/level=INFO msg="stn-replicate shut down"/);
    expect(rowCount(await restoredPath(dir))).toBe(1);
  });

  it('validates and prunes on the schedules from the config (validation-interval, snapshot-interval, retention)', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'v.db');
    const app = openSourceDb(dbPath);
    const cfg = join(dir, 'v.yml');
    writeFileSync(
      cfg,
      `dbs:\n  - path: ${dbPath}\n    min-checkpoint-page-count: 20\n    replicas:\n      - url: file://${join(dir, 'replica-v')}\n` +
        `        sync-interval: 10ms\n        validation-interval: 300ms\n        snapshot-interval: 400ms\n` +
        `        retention: 1s\n        retention-check-interval: 500ms\n`,
    );
    const p = spawnStn(['replicate', '-config', cfg]);
    await p.waitForLog(/snapshot written/);
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    let seq = 0;
    // Rows of 2 KB: a new WAL index every few dozen rows, so snapshots land on later indexes and
    // retention has older ones to delete.
    const t = setInterval(() => insert.run(`row ${seq++} ${'x'.repeat(2000)}`, seq), 10);
    try {
      await p.waitForLog(/validation ok/);
      await p.waitForLog(/retention: deleted below index/);
    } finally {
      clearInterval(t);
    }
    expect(p.lines.join('\n')).not.toMatch(/validation mismatch|not implemented/);
    expect(await p.stop('SIGTERM')).toBe(0);
    expect(await litestreamRestore(join(dir, 'replica-v'), join(dir, 'v-out.db'))).toBe(contentDigest(app));
  });
});
