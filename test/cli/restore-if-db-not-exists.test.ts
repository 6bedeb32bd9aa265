/**
 * `replicate -restore-if-db-not-exists -exec APP`: the seed's container start-up in one command, run as
 * processes. First boot (no database, no backup): the app starts and its writes are replicated. Restart:
 * nothing is restored. Volume lost: the app sees every earlier row. On a bad day (store unreachable,
 * bucket missing, a stray -wal) the command exits non-zero, the app never runs and no database file is
 * left behind.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { freePort } from '../helpers/free-port.js';
import { cleanEnv, stnReplicateBin } from '../../bench/lib/shared.js';
import { LoggedProcess, runLitestream } from '../helpers/oracle.js';
import { contentDigest } from '../helpers/source-db.js';
import { spawn } from 'node:child_process';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const bin = stnReplicateBin();
const bootApp = join(import.meta.dirname, '..', 'helpers', 'boot-app.cjs');
const tmp = tempDirs('stn-restore-if-missing-');
const procs = closeAfterEach((p: LoggedProcess) => p.stop('SIGKILL'));
/** One boot: the command with the app as -exec; returns the exit code, the log and what the app saw. */
async function boot(
  args: string[],
  dbPath: string,
  n: number,
  dir: string,
): Promise<{ code: number | null; log: string; seen?: { boot: number; n: number }[] }> {
  const seenFile = join(dir, `seen-${n}.json`);
  const app = `${process.execPath} ${bootApp} ${dbPath} ${n} ${seenFile}`;
  const p = new LoggedProcess(
    '',
    spawn(process.execPath, [bin, 'replicate', '-restore-if-db-not-exists', '-exec', app, ...args], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  procs.push(p);
  const code = await p.exit;
  const seen = existsSync(seenFile) ? (JSON.parse(readFileSync(seenFile, 'utf8')) as { boot: number; n: number }[]) : undefined;
  return { code, log: p.lines.join('\n'), seen };
}

function loseVolume(dbPath: string): void {
  for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) rmSync(f, { force: true });
  rmSync(join(join(dbPath, '..'), `.${dbPath.split('/').pop()}-litestream`), { recursive: true, force: true });
}

function generations(replicaDir: string): string[] {
  return readdirSync(join(replicaDir, 'generations'));
}

/** `replica`: more keys of the replica (e.g. `lease: false`). */
function s3Config(dir: string, dbPath: string, endpoint: string, bucket: string, top = '', replica: string[] = []): string {
  const config = join(dir, 'litestream.yml');
  writeFileSync(
    config,
    `${top}dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: s3\n        bucket: ${bucket}\n        path: station-db\n        endpoint: ${endpoint}\n` +
      `        region: us-east-1\n        access-key-id: k\n        secret-access-key: s\n        sync-interval: 100ms\n${replica.map((l) => `        ${l}\n`).join('')}`,
  );
  return config;
}

/** Nothing of the database left behind: no file, no -wal, no meta directory. */
function expectNoDatabase(dbPath: string): void {
  const dir = join(dbPath, '..');
  expect(readdirSync(dir).filter((f) => f.includes('station.db'))).toEqual([]);
}

describe('replicate -restore-if-db-not-exists', () => {
  it('first boot starts fresh, a restart restores nothing, and after the volume is lost the app sees every earlier row (config)', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'data', 'station.db');
    const replicaDir = join(dir, 'replica');
    const config = join(dir, 'litestream.yml');
    writeFileSync(
      config,
      `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: file\n        path: ${replicaDir}\n        sync-interval: 100ms\n`,
    );
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'data'));

    const first = await boot(['-config', config], dbPath, 1, dir);
    expect(first.code, first.log).toBe(0);
    expect(first.log).toMatch(/no backup/);
    expect(first.seen).toEqual([]);
    expect(generations(replicaDir)).toHaveLength(1);

    const second = await boot(['-config', config], dbPath, 2, dir);
    expect(second.code, second.log).toBe(0);
    expect(second.log).toMatch(/database exists, not restoring/);
    expect(second.seen).toEqual([{ boot: 1, n: 20 }]);

    loseVolume(dbPath);
    const third = await boot(['-config', config], dbPath, 3, dir);
    expect(third.code, third.log).toBe(0);
    expect(third.log).toMatch(/database restored/);
    expect(third.log).toMatch(/stateAt=/);
    expect(third.seen).toEqual([
      { boot: 1, n: 20 },
      { boot: 2, n: 20 },
    ]);
    // What the third boot wrote is replicated too, and the real Litestream restores all of it.
    const out = join(dir, 'litestream-restored.db');
    const r = await runLitestream(['restore', '-config', config, '-o', out, dbPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(contentDigest(out)).toBe(contentDigest(dbPath));
  });

  it('with continue-after-restore, the lineage goes on in the restored generation (one generation), and Litestream restores it all', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'station.db');
    const replicaDir = join(dir, 'replica');
    const config = join(dir, 'litestream.yml');
    writeFileSync(
      config,
      `dbs:\n  - path: ${dbPath}\n    continue-after-restore: true\n    replicas:\n      - type: file\n        path: ${replicaDir}\n`,
    );
    expect((await boot(['-config', config], dbPath, 1, dir)).code).toBe(0);
    loseVolume(dbPath);
    const again = await boot(['-config', config], dbPath, 2, dir);
    expect(again.code, again.log).toBe(0);
    expect(again.seen).toEqual([{ boot: 1, n: 20 }]);
    expect(generations(replicaDir)).toHaveLength(1);
    const out = join(dir, 'litestream-restored.db');
    const r = await runLitestream(['restore', '-o', out, `file://${replicaDir}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(contentDigest(out)).toBe(contentDigest(dbPath));
  });

  it('works in the URL form, and continues nothing it cannot prove (a new generation after a restore)', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'station.db');
    const url = `file://${join(dir, 'replica')}`;
    expect((await boot([dbPath, url], dbPath, 1, dir)).code).toBe(0);
    loseVolume(dbPath);
    const again = await boot([dbPath, url], dbPath, 2, dir);
    expect(again.code, again.log).toBe(0);
    expect(again.seen).toEqual([{ boot: 1, n: 20 }]);
    expect(generations(join(dir, 'replica'))).toHaveLength(2);
    const restored = join(dir, 'restored.db');
    const r = await runCli(['restore', '-o', restored, url]);
    expect(r.code, r.stderr).toBe(0);
    expect(contentDigest(restored)).toBe(contentDigest(dbPath));
  });

  it('with the store unreachable it exits non-zero: the app never runs and no database file exists', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'station.db');
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    // Leased (the default): the lease, taken before the restore, cannot be (after one TTL of retries,
    // short here). Unleased: the restore fails.
    for (const [replica, failed] of [
      [
        ['lease-ttl: 2s'],
        /replica s3: taking the lease at s3:\/\/backups\/station-db: .* \(the store kept failing for \d+ms\); nothing was written, not replicating and not starting the application/,
      ],
      [['lease: false'], /-restore-if-db-not-exists: .*not starting the application/],
    ] as const) {
      // With the metrics server on, too: it must not keep the failed command alive.
      const config = s3Config(dir, dbPath, endpoint, 'backups', 'addr: 127.0.0.1:0\n', [...replica]);
      const r = await boot(['-config', config], dbPath, 1, dir);
      expect(r.code, r.log).not.toBe(0);
      expect(r.code).not.toBeNull();
      expect(r.log).toMatch(failed);
      expect(r.log).toMatch(/ECONNREFUSED|connect/i);
      expect(r.log).not.toMatch(/starting subprocess/);
      expect(r.seen).toBeUndefined();
      expectNoDatabase(dbPath);
    }
  });

  it('with the bucket missing it exits non-zero and names it; an empty bucket is a first boot', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'station.db');
    const endpoint = inject('s3Endpoint');
    const missing = `missing-${randomBytes(4).toString('hex')}`;
    const r = await boot(['-config', s3Config(dir, dbPath, endpoint, missing)], dbPath, 1, dir);
    expect(r.code, r.log).not.toBe(0);
    expect(r.log).toMatch(new RegExp(missing));
    expect(r.seen).toBeUndefined();
    expectNoDatabase(dbPath);

    const { createBucket } = await import('../servers/s3-server.js');
    const bucket = `empty-${randomBytes(4).toString('hex')}`;
    await createBucket(endpoint, bucket);
    const ok = await boot(['-config', s3Config(dir, dbPath, endpoint, bucket)], dbPath, 1, dir);
    expect(ok.code, ok.log).toBe(0);
    expect(ok.log).toMatch(/no backup/);
    expect(ok.seen).toEqual([]);
  });

  it('access denied, or SIGTERM while the store does not answer: non-zero exit, the app never runs, nothing written', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'station.db');
    const endpoint = inject('s3Endpoint');
    const { createBucket } = await import('../servers/s3-server.js');
    const { startFaultProxy } = await import('../servers/fault-proxy.js');
    const bucket = `denied-${randomBytes(4).toString('hex')}`;
    await createBucket(endpoint, bucket);
    const proxy = await startFaultProxy(endpoint);
    try {
      const config = s3Config(dir, dbPath, proxy.endpoint, bucket, 'addr: 127.0.0.1:0\n');
      expect((await boot(['-config', config], dbPath, 1, dir)).code).toBe(0);
      loseVolume(dbPath);

      proxy.mode = 'error403';
      const denied = await boot(['-config', config], dbPath, 2, dir);
      expect(denied.code, denied.log).toBe(1);
      expect(denied.log).toMatch(/AccessDenied|403/);
      expect(denied.seen).toBeUndefined();
      expectNoDatabase(dbPath);

      // A store that accepts connections and never answers: the operator (or the orchestrator) stops it.
      // Leased (the default), the lease is taken before the restore, so the hang is there; unleased, in
      // the restore.
      proxy.mode = 'stall';
      for (const [replica, interrupted] of [
        [
          [],
          /taking the lease at s3:\/\/denied-\w+\/station-db: stopped by a signal, and the store did not answer within 5000ms of it; nothing was written, not replicating and not starting the application/,
        ],
        [['lease: false'], /-restore-if-db-not-exists: interrupted by a signal; nothing was written/],
      ] as const) {
        const stalled = s3Config(dir, dbPath, proxy.endpoint, bucket, 'addr: 127.0.0.1:0\n', [...replica]);
        const seenFile = join(dir, 'seen-3.json');
        const p = new LoggedProcess(
          '',
          spawn(
            process.execPath,
            [
              bin,
              'replicate',
              '-restore-if-db-not-exists',
              '-exec',
              `${process.execPath} ${bootApp} ${dbPath} 3 ${seenFile}`,
              '-config',
              stalled,
            ],
            {
              env: cleanEnv(),
              stdio: ['ignore', 'pipe', 'pipe'],
            },
          ),
        );
        procs.push(p);
        // Meanwhile /healthz says "starting" (503): a probe must not pass a process that does not
        // replicate yet.
        const line = p.lines[await p.waitForLog(/msg="serving metrics"/)]!;
        const addr = /addr=(\S+)/.exec(line)![1]!;
        await new Promise((r) => setTimeout(r, 500));
        const health = await fetch(`http://${addr}/healthz`);
        expect(health.status).toBe(503);
        expect(((await health.json()) as { status: string }).status).toBe('starting');
        await new Promise((r) => setTimeout(r, 500));
        expect(await p.stop('SIGTERM'), p.tail()).toBe(1);
        expect(p.lines.join('\n')).toMatch(interrupted);
        expect(existsSync(seenFile)).toBe(false);
        expectNoDatabase(dbPath);
      }
    } finally {
      await proxy.close();
    }
  });

  it('a file replica whose path runs through a file is an error, not an empty replica', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'station.db');
    writeFileSync(join(dir, 'backups'), 'not a directory (an unmounted volume, a typo)');
    const r = await boot([dbPath, `file://${join(dir, 'backups', 'station-db')}`], dbPath, 1, dir);
    expect(r.code, r.log).toBe(1);
    expect(r.log).toMatch(/ENOTDIR|not a directory/);
    expect(r.seen).toBeUndefined();
    expect(existsSync(dbPath)).toBe(false);
  });

  it('a -wal left without its database is refused with what to do, not restored under', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'station.db');
    const url = `file://${join(dir, 'replica')}`;
    expect((await boot([dbPath, url], dbPath, 1, dir)).code).toBe(0);
    rmSync(dbPath);
    writeFileSync(`${dbPath}-wal`, 'left from an earlier database');
    const r = await boot([dbPath, url], dbPath, 2, dir);
    expect(r.code, r.log).toBe(1);
    expect(r.log).toMatch(/a WAL file for the output path already exists/);
    expect(r.log).toMatch(/hint: a -wal file without its database/);
    expect(r.seen).toBeUndefined();
    expect(existsSync(dbPath)).toBe(false);
  });
});
