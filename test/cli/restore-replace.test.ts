/**
 * Restoring over an existing database, from the built binary: the error says what to do; with
 * `-replace-existing` the old database and its -wal/-shm are moved aside only after the restore
 * succeeded, never while another process has the database open, and a failed restore touches nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { encodeLz4Frame } from '../../src/internal/lz4-frame.js';
import { runBin } from '../helpers/cli.js';

const require = createRequire(import.meta.url);
const GEN = '0123456789abcdef';
let work: string;
let replicaDir: string;
let url: string;
const holders: ChildProcess[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'stn-restore-replace-'));
  replicaDir = join(work, 'replica');
  url = `file://${replicaDir}`;
  const src = join(work, 'source.db');
  const db = new Database(src);
  db.pragma('journal_mode = WAL');
  db.exec("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('restored');");
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const bytes = readFileSync(src);
  await new FileReplicaClient({ path: replicaDir }).writeSnapshot(
    GEN,
    0,
    encodeLz4Frame(
      (async function* () {
        yield bytes;
      })(),
    ),
  );
});
afterEach(() => {
  for (const h of holders.splice(0)) h.kill('SIGKILL');
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

let caseN = 0;
function caseDir(): { dir: string; out: string } {
  const dir = join(work, `case-${caseN++}`);
  mkdirSync(dir);
  return { dir, out: join(dir, 'app.db') };
}

/**
 * The application: a process that opens `path` in WAL mode, writes `rows` rows (the last ones stay in the
 * -wal: no checkpoint), says so, and then sits idle with its connection open, as a server between requests.
 */
async function startApp(path: string, rows: number): Promise<ChildProcess> {
  const script =
    `const D=require(${JSON.stringify(require.resolve('better-sqlite3'))});const db=new D(${JSON.stringify(path)});` +
    `db.pragma('journal_mode=WAL');db.pragma('wal_autocheckpoint=0');db.exec('CREATE TABLE IF NOT EXISTS t (v TEXT)');` +
    `for(let i=0;i<${rows};i++)db.prepare('INSERT INTO t VALUES (?)').run('old '+i);` +
    `console.log('ready');setInterval(()=>{},1<<30);`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  holders.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`app exited early (${code})`)));
  });
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL'); // a crash: its last rows are only in the -wal
  await exited;
}

function values(path: string): string[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT v FROM t ORDER BY rowid').all() as { v: string }[]).map((r) => r.v);
  } finally {
    db.close();
  }
}

/** Names and contents of every file in `dir`. */
function snapshotDir(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [f, readFileSync(join(dir, f)).toString('base64')]),
  );
}

describe('restore over an existing database', () => {
  it('without -replace-existing: refused, and the hint gives the procedure', async () => {
    const { out } = caseDir();
    writeFileSync(out, 'an existing database');
    const r = await runBin(['restore', '-o', out, url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `error: cannot restore, output path already exists: ${out}\n` +
        'hint: to restore over it: stop the application and any replicator using it, then move the file and its -wal and -shm aside ' +
        '(or pass -replace-existing, which does that after a successful restore); or choose another -o path, or pass -if-db-not-exists to skip restoring\n',
    );
  });

  it('-replace-existing is refused while the application has the database open, and nothing changes', async () => {
    const { dir, out } = caseDir();
    const app = await startApp(out, 3);
    const before = snapshotDir(dir);
    expect(Object.keys(before)).toEqual(['app.db', 'app.db-shm', 'app.db-wal']);

    const r = await runBin(['restore', '-replace-existing', '-o', out, url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `error: database ${out} is in use: another process has it open (an application or a replicator); stop it first\n` +
        'hint: stop the application and any replicator (stn-replicate or litestream replicate) that has the database open, then run the restore again\n',
    );
    expect(snapshotDir(dir)).toEqual(before);
    await kill(app);
  });

  it('-replace-existing after the application stopped: the old database (with what was only in its -wal) moved aside, the restored one in place', async () => {
    const { dir, out } = caseDir();
    await kill(await startApp(out, 3));
    expect(readdirSync(dir).sort()).toEqual(['app.db', 'app.db-shm', 'app.db-wal']);

    const r = await runBin(['restore', '-replace-existing', '-o', out, url]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toMatch(
      new RegExp(
        `^restored ${out} to \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z \\(replica file, generation ${GEN}, index 0, offset 0; from snapshot index 0, 0 WAL indexes\\)$`,
      ),
    );
    const aside = /^the database that was there was moved aside: (.*)$/.exec(lines[1]!)![1]!.split(', ');
    expect(lines.length).toBe(2);
    const base = aside[0]!;
    expect(base).toMatch(new RegExp(`^${out}\\.replaced-\\d{8}T\\d{6}\\.\\d{3}Z$`));
    // Each file of the old set renamed with the same base, so SQLite still opens them together.
    for (const f of aside.slice(1)) expect([`${base}-wal`, `${base}-shm`]).toContain(f);

    const names = readdirSync(dir).sort();
    expect(names.filter((n) => !n.startsWith('app.db.replaced-'))).toEqual(['app.db']); // no old -wal/-shm beside the new one
    expect(
      names
        .filter((n) => n.startsWith('app.db.replaced-'))
        .map((n) => join(dir, n))
        .sort(),
    ).toEqual([...aside].sort());
    expect(values(out)).toEqual(['restored']);
    expect(values(base)).toEqual(['old 0', 'old 1', 'old 2']);
  });

  it('-replace-existing with a restore that fails: the existing files are left exactly as they were', async () => {
    const { dir, out } = caseDir();
    await kill(await startApp(out, 2));
    const damaged = join(work, 'damaged');
    mkdirSync(join(damaged, 'generations', GEN, 'snapshots'), { recursive: true });
    const snap = readFileSync(join(replicaDir, 'generations', GEN, 'snapshots', '00000000.snapshot.lz4'));
    const copy = join(damaged, 'generations', GEN, 'snapshots', '00000000.snapshot.lz4');
    writeFileSync(copy, snap);
    truncateSync(copy, snap.length - 9);
    const before = snapshotDir(dir);

    const r = await runBin(['restore', '-replace-existing', '-o', out, `file://${damaged}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: restoring snapshot .*00000000\.snapshot\.lz4: /);
    expect(snapshotDir(dir)).toEqual(before);
  });

  it('-dry-run says a restore would move the database aside; -if-db-not-exists with it is refused', async () => {
    const { out } = caseDir();
    writeFileSync(out, 'an existing database');
    const r = await runBin(['restore', '-dry-run', '-replace-existing', '-o', out, url]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^output +${out} \\(exists: -replace-existing would move it and its -wal/-shm aside\\)$`, 'm'));
    const both = await runBin(['restore', '-replace-existing', '-if-db-not-exists', '-o', out, url]);
    expect(both.code).toBe(1);
    expect(both.stderr).toBe('error: cannot specify -replace-existing and -if-db-not-exists together\n');
  });
});
