/**
 * The deployment kit's container start-up, run as the container runs it: examples/docker/entrypoint.sh
 * with the checked-in examples/litestream.yml, its values from the environment, against a real S3
 * server. The application is a separate process that boots, reads what earlier boots wrote, writes and
 * exits. Then the manual point-in-time restore of docs/deploy.md, with its own commands.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../helpers/free-port.js';
import { LoggedProcess } from '../helpers/oracle.js';
import { createBucket } from '../servers/s3-server.js';

const root = join(import.meta.dirname, '..', '..');
const entrypoint = join(root, 'examples', 'docker', 'entrypoint.sh');
const exampleConfig = join(root, 'examples', 'litestream.yml');
const bootApp = join(root, 'test', 'helpers', 'boot-app.cjs');

const dir = mkdtempSync(join(tmpdir(), 'stn-entrypoint-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// `stn-replicate` on the PATH, as the image installs it; `node` is the one running these tests.
const binDir = join(dir, 'bin');
mkdirSync(binDir);
symlinkSync(join(root, 'bin', 'stn-replicate.js'), join(binDir, 'stn-replicate'));
const PATH = [binDir, dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin'].join(':');

interface Boot {
  code: number | null;
  log: string;
  seen?: { boot: number; n: number }[];
}

function boots(path: string): { boot: number; n: number }[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare('SELECT boot, COUNT(*) AS n FROM boots GROUP BY boot ORDER BY boot').all() as { boot: number; n: number }[];
  } finally {
    db.close();
  }
}

describe('the container start-up (examples/docker/entrypoint.sh)', () => {
  const endpoint = inject('s3Endpoint');
  const bucket = `deploy-${randomBytes(4).toString('hex')}`;
  const data = join(dir, 'data');
  const dbPath = join(data, 'station.db');
  // What the container's environment sets (docker-compose.yml, the StatefulSet).
  const env = (extra: Record<string, string> = {}): Record<string, string> => ({
    PATH,
    HOME: dir,
    LITESTREAM_CONFIG: exampleConfig,
    DATABASE_PATH: dbPath,
    LITESTREAM_S3_BUCKET: bucket,
    LITESTREAM_S3_ENDPOINT: endpoint,
    LITESTREAM_S3_ACCESS_KEY_ID: 'deploy-key',
    LITESTREAM_S3_SECRET_ACCESS_KEY: 'deploy-secret',
    STN_METRICS_ADDR: '', // several boots in a row: no fixed port
    ...extra,
  });

  async function boot(n: number, extra: Record<string, string> = {}): Promise<Boot> {
    const seenFile = join(dir, `seen-${n}.json`);
    rmSync(seenFile, { force: true });
    const child = spawn(entrypoint, ['node', bootApp, dbPath, String(n), seenFile], { env: env(extra), stdio: ['ignore', 'pipe', 'pipe'] });
    const p = new LoggedProcess('', child);
    const code = await p.exit;
    const seen = existsSync(seenFile) ? (JSON.parse(readFileSync(seenFile, 'utf8')) as Boot['seen']) : undefined;
    return { code, log: p.lines.join('\n'), seen };
  }

  function loseVolume(): void {
    rmSync(data, { recursive: true, force: true });
    mkdirSync(data);
  }

  async function stn(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
    const child = spawn('stn-replicate', args, { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    return { code, out, err };
  }

  let afterFirstBoot: string;

  it('first boot without a backup: the app starts on a new database and what it writes is replicated', async () => {
    await createBucket(endpoint, bucket);
    mkdirSync(data);
    const r = await boot(1);
    expect(r.code, r.log).toBe(0);
    expect(r.log).toMatch(/no backup found, starting with a new database/);
    expect(r.seen).toEqual([]);
    const gens = await stn(['generations', dbPath]);
    expect(gens.code, gens.err).toBe(0);
    expect(gens.out.trim().split('\n')).toHaveLength(2); // header + one generation
    await new Promise((r) => setTimeout(r, 1100)); // segment times have second resolution on some stores
    afterFirstBoot = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 1100));
  });

  it('restart: the database is there, nothing is restored, the app sees its rows', async () => {
    const r = await boot(2);
    expect(r.code, r.log).toBe(0);
    expect(r.log).toMatch(/database exists, not restoring/);
    expect(r.seen).toEqual([{ boot: 1, n: 20 }]);
  });

  it('volume lost: the latest state is restored before the app starts, and it sees every earlier row', async () => {
    loseVolume();
    const r = await boot(3);
    expect(r.code, r.log).toBe(0);
    expect(r.log).toMatch(/database restored/);
    expect(r.seen).toEqual([
      { boot: 1, n: 20 },
      { boot: 2, n: 20 },
    ]);
  });

  it('store unreachable with the volume lost: non-zero exit, the app never runs, no database file', async () => {
    loseVolume();
    const r = await boot(4, { LITESTREAM_S3_ENDPOINT: `http://127.0.0.1:${await freePort()}` });
    expect(r.code, r.log).not.toBe(0);
    expect(r.code).not.toBeNull();
    // The replica's lease is taken first (before the restore): the store is unreachable, so it cannot be,
    // after one lease TTL (the default 30 s) of retries, which ride out a short outage.
    expect(r.log).toMatch(
      /taking the lease at s3:\/\/\S+: .* \(the store kept failing for \d+ms\); nothing was written, not replicating and not starting the application/,
    );
    expect(r.seen).toBeUndefined();
    expect(readdirSync(data)).toEqual([]);
  });

  it("docs/deploy.md's manual point-in-time restore: the state before the second boot", async () => {
    const out = join(dir, 'pitr', 'station.db');
    const gens = await stn(['generations', dbPath]);
    expect(gens.code, gens.err).toBe(0);
    const r = await stn(['restore', '-timestamp', afterFirstBoot, '-o', out, dbPath]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(new RegExp(`^restored ${out} to \\S+Z \\(replica s3, generation`));
    expect(boots(out)).toEqual([{ boot: 1, n: 20 }]);

    // In place, over the database a later boot left (the application stopped): the old files are moved aside.
    const fifth = await boot(5);
    expect(fifth.code, fifth.log).toBe(0);
    const inPlace = await stn(['restore', '-timestamp', afterFirstBoot, '-replace-existing', dbPath]);
    expect(inPlace.code, inPlace.err).toBe(0);
    expect(boots(dbPath)).toEqual([{ boot: 1, n: 20 }]);
    const aside = readdirSync(data).filter((f) => /^station\.db\.replaced-[^-]+$/.test(f));
    expect(aside).toHaveLength(1);
    expect(boots(join(data, aside[0]!)).map((b) => b.boot)).toEqual([1, 2, 3, 5]);
  });
});
