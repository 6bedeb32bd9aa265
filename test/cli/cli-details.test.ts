/**
 * Smaller claims of docs/cli.md and docs/compatibility.md: `version`, `-config` with a URL, flags after
 * the target and with two dashes, the `lag` column in config mode, and what a restored database is
 * (WAL journal mode, Litestream's tables kept).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { encodeLz4Frame } from '../../src/internal/lz4-frame.js';
import { runCli } from '../helpers/cli.js';
import { parseTable, runLitestream } from '../helpers/oracle.js';
import { contentDigest, openSourceDb } from '../helpers/source-db.js';

const GEN = '0123456789abcdef';
let dir: string;
let dbPath: string;
let replicaDir: string;
let url: string;
let source: string;
let snapshotAt: Date;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stn-cli-details-'));
  dbPath = join(dir, 'app.db');
  replicaDir = join(dir, 'replica');
  url = `file://${replicaDir}`;
  // A replica of one snapshot: a database with rows and Litestream's own tables, in WAL mode.
  const app = openSourceDb(dbPath);
  app.exec('CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER); CREATE TABLE _litestream_lock (id INTEGER);');
  app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('a row', 1);
  app.pragma('wal_checkpoint(TRUNCATE)');
  source = contentDigest(app);
  app.close();
  const info = await new FileReplicaClient({ path: replicaDir }).writeSnapshot(
    GEN,
    0,
    encodeLz4Frame(
      (async function* () {
        yield readFileSync(dbPath);
      })(),
    ),
  );
  snapshotAt = new Date(Math.floor(Date.parse('2026-01-02T03:04:05Z') / 1000) * 1000);
  utimesSync(join(replicaDir, 'generations', GEN, 'snapshots', '00000000.snapshot.lz4'), snapshotAt, snapshotAt);
  expect(info.size).toBeGreaterThan(0);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function config(name: string): string {
  const path = join(dir, `${name}.yml`);
  writeFileSync(path, `dbs:\n  - path: ${dbPath}\n    replicas:\n      - url: ${url}\n`);
  return path;
}

describe('command line details', () => {
  it('version prints the package version, v-prefixed as Litestream prints its own', async () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    expect(await runCli(['version'])).toEqual({ code: 0, stdout: `v${pkg.version}\n`, stderr: '' });
  });

  it('refuses -config together with a replica URL, in every command that takes a target', async () => {
    const cfg = config('with-url');
    for (const args of [['restore', '-o', join(dir, 'x.db')], ['generations'], ['snapshots'], ['wal'], ['replicate', dbPath]]) {
      const r = await runCli([...args, '-config', cfg, url]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toBe('error: cannot specify a replica URL and the -config flag\n');
    }
  });

  it('takes flags after the target, with two dashes and as -flag=value', async () => {
    for (const [i, flags] of [
      ['-o', '#'],
      ['-o=#'],
      ['--integrity-check=full', '-o', '#'],
      ['-integrity-check', 'full', '--parallelism', '2', '-o', '#'],
    ].entries()) {
      const out = join(dir, 'flags', `${i}.db`);
      const r = await runCli(['restore', url, ...flags.map((f) => f.replace('#', out))], { cwd: dir }); // a misread path stays in dir
      expect(r.code, `${flags.join(' ')}: ${r.stderr}`).toBe(0);
      expect(contentDigest(out)).toBe(source);
    }
  });

  it("prints lag in config mode as the time from a generation's last object to the database's last change", async () => {
    const cfg = config('lag');
    // The database (and its WAL) last changed 90.25 s after the snapshot was written.
    const changed = new Date(snapshotAt.getTime() + 90_250);
    for (const p of [dbPath, `${dbPath}-wal`]) {
      if (!existsSync(p)) writeFileSync(p, ''); // the -wal: empty is enough for its time
      utimesSync(p, changed, changed);
    }
    const r = await runCli(['generations', '-config', cfg, dbPath]);
    expect(r.code, r.stderr).toBe(0);
    // No local meta directory: the newest generation is the current one.
    expect(parseTable(r.stdout)).toEqual([
      {
        name: 'file',
        generation: GEN,
        lag: '1m30s',
        start: '2026-01-02T03:04:05.000Z',
        end: '2026-01-02T03:04:05.000Z',
        status: 'current',
      },
    ]);
  });

  it('restores a database in WAL journal mode that keeps Litestream’s tables, as Litestream does', async () => {
    const ours = join(dir, 'wal-mode', 'ours.db');
    const theirs = join(dir, 'wal-mode', 'theirs.db');
    mkdirSync(join(dir, 'wal-mode'), { recursive: true });
    expect((await runCli(['restore', '-o', ours, url])).code).toBe(0);
    expect((await runLitestream(['restore', '-o', theirs, url])).code).toBe(0);
    for (const out of [ours, theirs]) {
      const db = new Database(out, { readonly: true });
      try {
        expect(db.pragma('journal_mode', { simple: true }), out).toBe('wal');
        const tables = db
          .prepare("SELECT name FROM sqlite_master WHERE name LIKE '\\_litestream\\_%' ESCAPE '\\' ORDER BY name")
          .pluck()
          .all();
        expect(tables, out).toEqual(['_litestream_lock', '_litestream_seq']);
      } finally {
        db.close();
      }
      expect(contentDigest(out)).toBe(source);
    }
  });
});
