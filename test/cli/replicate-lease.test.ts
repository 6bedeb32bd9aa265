/**
 * Two `stn-replicate replicate` processes on one file replica (issue 14), as a rolling deployment runs
 * them: each instance on its own volume, the second started with -restore-if-db-not-exists. The second
 * writes nothing while the first holds the lease and says who holds it; it takes over on a clean stop,
 * after a SIGKILL, and after the TTL when the first stops renewing (SIGSTOP) — and the first, resumed,
 * finds its lease lost, writes nothing more and exits non-zero; so does a holder that cannot renew.
 * The real Litestream restores the replica, lease records and all.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, spawnBin } from '../helpers/cli.js';
import { LoggedProcess, oracleEnv, runLitestream } from '../helpers/oracle.js';
import { contentDigest, openSourceDb, rowCount } from '../helpers/source-db.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'stn-replicate.js');
const bootApp = join(import.meta.dirname, '..', 'helpers', 'boot-app.cjs');
const dirs: string[] = [];
const procs: LoggedProcess[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p instanceof Instance) p.resume();
    await p.stop('SIGKILL');
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

class Instance extends LoggedProcess {
  resume(): void {
    if (this.child.exitCode === null) this.child.kill('SIGCONT');
  }
  pause(): void {
    this.child.kill('SIGSTOP');
  }
}

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'stn-lease-'));
  dirs.push(d);
  return d;
}

/** One instance's config: its own database (volume), the shared replica, a short lease TTL. */
function config(dir: string, name: string, dbPath: string, replicaDir: string): string {
  const path = join(dir, `${name}.yml`);
  writeFileSync(path, `dbs:\n  - path: ${dbPath}\n    replicas:\n      - path: ${replicaDir}\n        lease-ttl: 2s\n`);
  return path;
}

function start(args: string[]): Instance {
  const p = new Instance('', spawn(process.execPath, [bin, 'replicate', ...args], { env: oracleEnv(), stdio: ['ignore', 'pipe', 'pipe'] }));
  procs.push(p);
  return p;
}

function generations(replicaDir: string): string[] {
  return readdirSync(join(replicaDir, 'generations')).sort();
}

/** Every object under a generation (snapshots and WAL segments), for "wrote nothing" checks. */
function objects(replicaDir: string): string[] {
  return generations(replicaDir).flatMap((g) =>
    ['snapshots', 'wal'].flatMap((sub) => {
      const d = join(replicaDir, 'generations', g, sub);
      return existsSync(d) ? readdirSync(d).map((f) => `${g}/${sub}/${f}`) : [];
    }),
  ).sort();
}

async function litestreamRestore(replicaDir: string, out: string, extra: string[] = []): Promise<string> {
  const r = await runLitestream(['restore', ...extra, '-o', out, `file://${replicaDir}`]);
  expect(r.code, r.stderr).toBe(0);
  return contentDigest(out);
}

/** Polls `cond` until it holds (generous timeout; no timing is asserted). */
async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms: ${cond.toString()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function insertRows(db: Database.Database, from: number, count: number): void {
  const insert = db.prepare('INSERT INTO t (id, v, n) VALUES (?, ?, ?)');
  db.transaction(() => {
    for (let i = 0; i < count; i++) insert.run(from + i, `row ${from + i}`, from);
  })();
}

/** The first instance, replicating a database the test writes to; returns once its first rows are uploaded. */
async function firstInstance(dir: string, replicaDir: string): Promise<{ a: Instance; db: Database.Database; dbPath: string }> {
  const dbPath = join(dir, 'volume-a', 'app.db');
  mkdirSync(join(dir, 'volume-a'));
  const db = openSourceDb(dbPath);
  insertRows(db, 1, 50);
  const a = start(['-config', config(dir, 'a', dbPath, replicaDir)]);
  await a.waitForLog(/msg="replica lease acquired"/);
  await a.waitForLog(/msg="snapshot written"/);
  return { a, db, dbPath };
}

/** The second instance: a fresh volume, restore first, then the application (boot-app) under -exec. */
function secondInstance(dir: string, replicaDir: string): { b: Instance; dbPath: string; seenFile: string } {
  // A fresh volume: an empty directory.
  mkdirSync(join(dir, 'volume-b'));
  const dbPath = join(dir, 'volume-b', 'app.db');
  const seenFile = join(dir, 'seen-b.json');
  const app = `${process.execPath} ${bootApp} ${dbPath} 2 ${seenFile} 30`;
  const b = start(['-config', config(dir, 'b', dbPath, replicaDir), '-restore-if-db-not-exists', '-exec', app]);
  return { b, dbPath, seenFile };
}

/** While `a` holds the lease: `b` says who holds it, restores nothing, runs no app and writes nothing. */
async function expectWaiting(a: Instance, b: Instance, db: Database.Database, replicaDir: string, bDbPath: string, seenFile: string): Promise<void> {
  const line = b.lines[await b.waitForLog(/msg="replica lease held by another instance; waiting/)]!;
  expect(line).toContain(`pid ${a.pid}`);
  expect(line).toMatch(/since=\S+/);
  expect(line).toContain(`location=${replicaDir}`);
  // The first keeps replicating (a new segment) while b waits.
  const before = objects(replicaDir).length;
  insertRows(db, 1000, 40);
  await waitFor(() => objects(replicaDir).length > before);
  expect(generations(replicaDir)).toHaveLength(1);
  expect(existsSync(bDbPath)).toBe(false);
  expect(existsSync(seenFile)).toBe(false);
  expect(b.lines.join('\n')).not.toMatch(/snapshot written|restor(ed|ing) /);
}

describe('two replicate processes on one file replica', () => {
  it('the second waits, saying who holds the lease; a clean stop hands over; it starts from the first one\'s last state', async () => {
    const dir = tmp();
    const replicaDir = join(dir, 'replica');
    const { a, db } = await firstInstance(dir, replicaDir);
    const { b, dbPath: bDb, seenFile } = secondInstance(dir, replicaDir);
    await expectWaiting(a, b, db, replicaDir, bDb, seenFile);
    insertRows(db, 2000, 25);
    const lastOfA = contentDigest(db);
    db.close();
    expect(await a.stop('SIGTERM')).toBe(0);
    expect(a.lines.join('\n')).toMatch(/msg="replica lease released"/);
    // b takes over, restores a's last state, runs the app (which sees it), and stops when the app ends.
    expect(await b.exit).toBe(0);
    const log = b.lines.join('\n');
    expect(log).toMatch(/msg="replica lease acquired"/);
    expect(log).not.toMatch(/taken over/); // released: no expiry involved
    expect(JSON.parse(readFileSync(seenFile, 'utf8'))).toEqual([]); // a fresh boots table, on a's data
    expect(rowCount(bDb)).toBe(115);
    // The latest restore is b's database, which holds everything a had.
    const restored = join(dir, 'restored.db');
    expect(await litestreamRestore(replicaDir, restored)).toBe(contentDigest(bDb));
    expect(contentDigest(join(dir, 'restored.db'))).not.toBe(lastOfA); // b's boots rows on top
    expect(rowCount(restored, 'boots')).toBe(30);
    expect(existsSync(join(replicaDir, 'lease'))).toBe(true);
  });

  it('after a SIGKILL of the holder, the second takes over and continues from what was uploaded', async () => {
    const dir = tmp();
    const replicaDir = join(dir, 'replica');
    const { a, db } = await firstInstance(dir, replicaDir);
    const { b, dbPath: bDb, seenFile } = secondInstance(dir, replicaDir);
    await expectWaiting(a, b, db, replicaDir, bDb, seenFile);
    // What a uploaded before it dies (a sync of its own, read from the replica by Litestream).
    const uploaded = join(dir, 'uploaded.db');
    const genA = generations(replicaDir)[0]!;
    await a.stop('SIGKILL');
    db.close();
    // a's generation by name: b may be writing its own meanwhile.
    await litestreamRestore(replicaDir, uploaded, ['-generation', genA]);
    expect(await b.exit).toBe(0);
    expect(b.lines.join('\n')).toMatch(/msg="replica lease taken over from an instance that stopped renewing it"/);
    // b started from exactly what a had uploaded, and its app's rows came on top.
    const bDbNow = new Database(bDb, { readonly: true });
    expect(bDbNow.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: rowCount(uploaded) });
    bDbNow.close();
    expect(await litestreamRestore(replicaDir, join(dir, 'restored.db'))).toBe(contentDigest(bDb));
  });

  it('a holder that stops renewing (SIGSTOP) is taken over after the TTL; resumed, it writes nothing more and exits non-zero', async () => {
    const dir = tmp();
    const replicaDir = join(dir, 'replica');
    const { a, db } = await firstInstance(dir, replicaDir);
    const genA = generations(replicaDir)[0]!;
    // b replicates a database of its own (no -exec: it keeps running).
    const bDb = join(dir, 'volume-b.db');
    const b = start(['-config', config(dir, 'b', bDb, replicaDir), '-restore-if-db-not-exists']);
    await b.waitForLog(/msg="replica lease held by another instance; waiting/);
    a.pause();
    // Alive but silent: its pid exists, so b must wait out the TTL, then takes over.
    await b.waitForLog(/msg="replica lease taken over from an instance that stopped renewing it"/, 0, 30_000);
    await b.waitForLog(/msg="snapshot written"/, 0, 30_000);
    // Rows a would upload as soon as it runs again, if it did not check its lease first.
    insertRows(db, 5000, 60);
    const beforeResume = objects(replicaDir).filter((o) => o.startsWith(genA));
    a.resume();
    expect(await a.exit).not.toBe(0);
    expect(a.lines.join('\n')).toMatch(/msg="replica lease lost; stopped writing"/);
    expect(objects(replicaDir).filter((o) => o.startsWith(genA))).toEqual(beforeResume);
    db.close();
    // b is the writer now: its restore is the latest.
    const bApp = new Database(bDb);
    bApp.prepare("INSERT INTO t (v, n) VALUES ('written by b', 7)").run();
    bApp.close();
    expect(await b.stop('SIGTERM')).toBe(0);
    expect(await litestreamRestore(replicaDir, join(dir, 'restored.db'))).toBe(contentDigest(bDb));
  });

  it('`lease` shows the holder; `lease -break INSTANCE` releases it only for that instance', async () => {
    const dir = tmp();
    const replicaDir = join(dir, 'replica');
    const { a, db } = await firstInstance(dir, replicaDir);
    // The holder's generation is in the record from its first renewal after the database opened.
    let shown = await runCli(['lease', `file://${replicaDir}`]);
    await waitFor(async () => {
      shown = await runCli(['lease', `file://${replicaDir}`]);
      return shown.stdout.includes(generations(replicaDir)[0]!);
    });
    expect(shown.code, shown.stderr).toBe(0);
    const [header, row] = shown.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^name\s+status\s+host\s+pid\s+instance\s+generation\s+since\s+renewed\s+ttl$/);
    const cells = row!.split(/\s+/);
    expect(cells.slice(0, 2)).toEqual(['file', 'held']);
    expect(cells[3]).toBe(String(a.pid));
    expect(cells[5]).toBe(generations(replicaDir)[0]);
    const instance = cells[4]!;
    const wrong = await runCli(['lease', '-break', 'not-the-holder', `file://${replicaDir}`]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/held by instance \w+, not not-the-holder/);
    const broke = await runCli(['lease', '-break', instance, `file://${replicaDir}`]);
    expect(broke.code, broke.stderr).toBe(0);
    expect(broke.stdout).toMatch(/lease broken \(was held by .* pid \d+/);
    // The holder finds out at its next renewal: it stops and exits non-zero.
    expect(await a.exit).not.toBe(0);
    expect(a.lines.join('\n')).toMatch(/lease lost \(someone else wrote the lease/);
    db.close();
    const byDb = await runCli(['lease', '-config', join(dir, 'a.yml'), join(dir, 'volume-a', 'app.db')]);
    expect(byDb.code, byDb.stderr).toBe(0);
    expect(byDb.stdout).toMatch(/\nfile\s+released\s/);
    const after = await runCli(['lease', `file://${replicaDir}`]);
    expect(after.stdout).toMatch(/\nfile\s+released\s/);
  });
});

describe('a holder that cannot renew', () => {
  it('stops writing at its deadline, logs why, and exits non-zero', async () => {
    const dir = tmp();
    const replicaDir = join(dir, 'replica');
    const { a, db } = await firstInstance(dir, replicaDir);
    // The lease records become unwritable (the directory turns into a file: ENOTDIR, even as root).
    renameSync(join(replicaDir, 'lease'), join(dir, 'lease.moved'));
    writeFileSync(join(replicaDir, 'lease'), 'not a directory');
    expect(await a.exit).not.toBe(0);
    const log = a.lines.join('\n');
    expect(log).toMatch(/msg="replica lease renewal failed; retrying until its deadline"/);
    expect(log).toMatch(/msg="replica lease lost; stopped writing" .*reason="not renewed in time"/);
    db.close();
  });
});

describe('leases and replicas Litestream wrote', () => {
  it('a replica Litestream wrote (no lease object) is taken over as before', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    const db = openSourceDb(dbPath);
    insertRows(db, 1, 20);
    const { LitestreamReplicator } = await import('../helpers/oracle.js');
    const ls = LitestreamReplicator.start({ dbPath, replicaDir });
    procs.push(ls);
    await ls.waitForLog(/msg="snapshot written"/);
    // Stopped once idle: Litestream's final sync races its own upload of the first segment otherwise.
    await ls.waitForLog(/msg="wal segment written"/);
    expect(await ls.stop('SIGINT'), ls.tail()).toBe(0);
    expect(existsSync(join(replicaDir, 'lease'))).toBe(false);
    const p = spawnBin(['replicate', dbPath, `file://${replicaDir}`]);
    procs.push(p);
    await p.waitForLog(/msg="replica lease acquired"/);
    insertRows(db, 100, 20);
    expect(await p.stop('SIGTERM')).toBe(0);
    expect(await litestreamRestore(replicaDir, join(dir, 'out.db'))).toBe(contentDigest(db));
    db.close();
  });
});
