/**
 * Two `stn-replicate replicate` processes on one replica (issue 14), as a rolling deployment runs them:
 * each instance on its own volume, the second started with -restore-if-db-not-exists. The second
 * writes nothing while the first holds the lease and says who holds it; it takes over on a clean stop
 * and after a SIGKILL, starting from the first one's last state — on file, s3, gcs and abs replicas.
 * On file also: after the TTL when the first stops renewing (SIGSTOP), and the first, resumed, finds its
 * lease lost, writes nothing more and exits non-zero; so does a holder that cannot renew (on the cloud
 * backends, test/integration/lease-faults.test.ts); `lease` and `lease -break`. The real Litestream
 * restores every replica, lease object and all, and a replica Litestream wrote is taken over as before.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { AbsReplicaClient } from '../../src/client/abs-client.js';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { GcsReplicaClient } from '../../src/client/gcs-client.js';
import { collect, type LeaseCapableClient } from '../../src/client/replica-client.js';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { startReplicator } from '../helpers/cloud-oracle.js';
import { runCli } from '../helpers/cli.js';
import { cleanEnv, stnReplicateBin } from '../../bench/lib/shared.js';
import { LoggedProcess, runLitestream } from '../helpers/oracle.js';
import { contentDigest, openSourceDb, rowCount } from '../helpers/source-db.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer } from '../servers/abs-server.js';
import { startFaultProxy } from '../servers/fault-proxy.js';
import { createBucket } from '../servers/s3-server.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const bin = stnReplicateBin();
const bootApp = join(import.meta.dirname, '..', 'helpers', 'boot-app.cjs');
const tmp = tempDirs('stn-lease-');
const procs = closeAfterEach(async (p: LoggedProcess) => {
  if (p instanceof Instance) p.resume();
  await p.stop('SIGKILL');
});

class Instance extends LoggedProcess {
  resume(): void {
    if (this.child.exitCode === null) this.child.kill('SIGCONT');
  }
  pause(): void {
    this.child.kill('SIGSTOP');
  }
  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }
}

/** A replica both instances (and Litestream) point at. */
interface Target {
  name: 'file' | 's3' | 'gcs' | 'abs';
  /** Its YAML keys in a config (`key: value` lines, the first one starting the list item). */
  yaml: string[];
  /** Environment for both tools (where the GCS emulator is). */
  env: Record<string, string>;
  /** Our client on the same replica: listings and the lease object, read from the store. */
  client: LeaseCapableClient;
  /** The replica's location as the logs name it. */
  location: string;
}

function fileTarget(replicaDir: string): Target {
  return {
    name: 'file',
    yaml: ['type: file', `path: ${replicaDir}`],
    env: {},
    client: new FileReplicaClient({ path: replicaDir }),
    location: replicaDir,
  };
}

/** A fresh bucket on the S3 test server; both tools reach it through `endpoint` (the server or a proxy). */
async function s3Target(endpoint: string): Promise<Target> {
  const origin = inject('s3Endpoint');
  const bucket = `lease-${randomBytes(4).toString('hex')}`;
  await createBucket(origin, bucket);
  return {
    name: 's3',
    yaml: [
      'type: s3',
      `bucket: ${bucket}`,
      'path: app',
      `endpoint: ${endpoint}`,
      'region: us-east-1',
      'force-path-style: true',
      'access-key-id: k',
      'secret-access-key: s',
    ],
    env: {},
    client: new S3ReplicaClient({ bucket, path: 'app', endpoint: origin, region: 'us-east-1', accessKeyId: 'k', secretAccessKey: 's' }),
    location: `s3://${bucket}/app`,
  };
}

/** A fresh replica path on each backend's test server. */
const TARGETS: Record<Target['name'], (dir: string) => Promise<Target>> = {
  file: async (dir) => fileTarget(join(dir, 'replica')),
  s3: async () => s3Target(inject('s3Endpoint')),
  gcs: async () => {
    const endpoint = inject('gcsEndpoint');
    const bucket = `lease-${randomBytes(4).toString('hex')}`;
    return {
      name: 'gcs',
      yaml: [`url: gcs://${bucket}/app`],
      env: { STORAGE_EMULATOR_HOST: endpoint },
      client: new GcsReplicaClient({ bucket, path: 'app', endpoint }),
      location: `gcs://${bucket}/app`,
    };
  },
  abs: async () => {
    const endpoint = inject('absEndpoint');
    const container = `lease-${randomBytes(4).toString('hex')}`;
    await createContainer(endpoint, container);
    return {
      name: 'abs',
      yaml: [
        'type: abs',
        `account-name: ${AZURITE_ACCOUNT}`,
        `account-key: ${AZURITE_KEY}`,
        `endpoint: ${endpoint}`,
        `bucket: ${container}`,
        'path: app',
      ],
      env: {},
      client: new AbsReplicaClient({ accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, bucket: container, path: 'app', endpoint }),
      location: `abs://${AZURITE_ACCOUNT}@${container}/app`,
    };
  },
};

/** A config with one database and the target replica (`extra`: more keys of the replica). */
function writeConfig(path: string, dbPath: string, target: Target, extra: string[] = []): string {
  const item = [...target.yaml, ...extra].map((line, i) => `${i === 0 ? '      - ' : '        '}${line}`);
  writeFileSync(path, ['dbs:', `  - path: ${dbPath}`, '    replicas:', ...item, ''].join('\n'));
  return path;
}

/** One instance's config: its own database (volume), the shared replica, a short lease TTL. */
function config(dir: string, name: string, dbPath: string, target: Target): string {
  return writeConfig(join(dir, `${name}.yml`), dbPath, target, ['lease-ttl: 2s']);
}

function start(args: string[], env: Record<string, string> = {}): Instance {
  const p = new Instance(
    '',
    spawn(process.execPath, [bin, 'replicate', ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  procs.push(p);
  return p;
}

async function generations(target: Target): Promise<string[]> {
  return target.client.generations();
}

/** Every object under a generation (snapshots and WAL segments), for "wrote nothing" checks. */
async function objects(target: Target): Promise<string[]> {
  const out: string[] = [];
  for (const g of await generations(target)) {
    for (const s of await collect(target.client.snapshots(g))) out.push(`${g}/snapshots/${s.index}`);
    for (const w of await collect(target.client.walSegments(g))) out.push(`${g}/wal/${w.index}_${w.offset}`);
  }
  return out.sort();
}

/** The real Litestream restores the replica (through a config of its own: any database path names it). */
async function litestreamRestore(target: Target, out: string, extra: string[] = []): Promise<string> {
  const cfg = writeConfig(`${out}.litestream.yml`, `${out}.source`, target);
  const r = await runLitestream(['restore', ...extra, '-config', cfg, '-o', out, `${out}.source`], target.env);
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
async function firstInstance(dir: string, target: Target): Promise<{ a: Instance; db: Database.Database; dbPath: string }> {
  const dbPath = join(dir, 'volume-a', 'app.db');
  mkdirSync(join(dir, 'volume-a'));
  const db = openSourceDb(dbPath);
  insertRows(db, 1, 50);
  const a = start(['-config', config(dir, 'a', dbPath, target)], target.env);
  await a.waitForLog(/msg="replica lease acquired"/);
  await a.waitForLog(/msg="snapshot written"/);
  return { a, db, dbPath };
}

/** The second instance: a fresh volume, restore first, then the application (boot-app) under -exec. */
function secondInstance(dir: string, target: Target): { b: Instance; dbPath: string; seenFile: string } {
  // A fresh volume: an empty directory.
  mkdirSync(join(dir, 'volume-b'));
  const dbPath = join(dir, 'volume-b', 'app.db');
  const seenFile = join(dir, 'seen-b.json');
  const app = `${process.execPath} ${bootApp} ${dbPath} 2 ${seenFile} 30`;
  const b = start(['-config', config(dir, 'b', dbPath, target), '-restore-if-db-not-exists', '-exec', app], target.env);
  return { b, dbPath, seenFile };
}

/** While `a` holds the lease: `b` says who holds it, restores nothing, runs no app and writes nothing. */
async function expectWaiting(
  a: Instance,
  b: Instance,
  db: Database.Database,
  target: Target,
  bDbPath: string,
  seenFile: string,
): Promise<void> {
  const line = b.lines[await b.waitForLog(/msg="replica lease held by another instance; waiting/)]!;
  expect(line).toContain(`pid ${a.pid}`);
  expect(line).toMatch(/since=\S+/);
  expect(line).toContain(`location=${target.location}`);
  // The first keeps replicating (a new segment) while b waits.
  const before = (await objects(target)).length;
  insertRows(db, 1000, 40);
  await waitFor(async () => (await objects(target)).length > before);
  expect(await generations(target)).toHaveLength(1);
  expect(existsSync(bDbPath)).toBe(false);
  expect(existsSync(seenFile)).toBe(false);
  expect(b.lines.join('\n')).not.toMatch(/snapshot written|restor(ed|ing) /);
}

describe.each(['file', 's3', 'gcs', 'abs'] as const)('two replicate processes on one %s replica', (backend) => {
  it("the second waits, saying who holds the lease; a clean stop hands over; it starts from the first one's last state", async () => {
    const dir = tmp();
    const target = await TARGETS[backend](dir);
    const { a, db } = await firstInstance(dir, target);
    const { b, dbPath: bDb, seenFile } = secondInstance(dir, target);
    await expectWaiting(a, b, db, target, bDb, seenFile);
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
    expect(await litestreamRestore(target, restored)).toBe(contentDigest(bDb));
    expect(contentDigest(restored)).not.toBe(lastOfA); // b's boots rows on top
    expect(rowCount(restored, 'boots')).toBe(30);
    expect((await target.client.readLease())?.body.toString()).toMatch(/"holder": null/);
  });

  it('after a SIGKILL of the holder, the second takes over and continues from what was uploaded', async () => {
    const dir = tmp();
    const target = await TARGETS[backend](dir);
    const { a, db } = await firstInstance(dir, target);
    const { b, dbPath: bDb, seenFile } = secondInstance(dir, target);
    await expectWaiting(a, b, db, target, bDb, seenFile);
    // What a uploaded before it dies (a sync of its own, read from the replica by Litestream).
    const uploaded = join(dir, 'uploaded.db');
    const genA = (await generations(target))[0]!;
    await a.stop('SIGKILL');
    db.close();
    // a's generation by name: b may be writing its own meanwhile.
    await litestreamRestore(target, uploaded, ['-generation', genA]);
    expect(await b.exit).toBe(0);
    expect(b.lines.join('\n')).toMatch(/msg="replica lease taken over from an instance that stopped renewing it"/);
    // b started from exactly what a had uploaded, and its app's rows came on top.
    const bDbNow = new Database(bDb, { readonly: true });
    expect(bDbNow.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: rowCount(uploaded) });
    bDbNow.close();
    expect(await litestreamRestore(target, join(dir, 'restored.db'))).toBe(contentDigest(bDb));
  });

  it('a replica Litestream wrote (no lease object) is taken over as before', async () => {
    const dir = tmp();
    const target = await TARGETS[backend](dir);
    const dbPath = join(dir, 'app.db');
    const db = openSourceDb(dbPath);
    insertRows(db, 1, 20);
    const cfg = writeConfig(join(dir, 'litestream.yml'), dbPath, target, ['sync-interval: 100ms']);
    const ls = startReplicator('litestream', cfg, target.env);
    procs.push(ls);
    await ls.waitForLog(/msg="snapshot written"/);
    // Stopped once idle: Litestream's final sync races its own upload of the first segment otherwise.
    await ls.waitForLog(/msg="wal segment written"/);
    expect(await ls.stop('SIGINT'), ls.tail()).toBe(0);
    expect(await target.client.readLease()).toBeUndefined();
    const p = start(['-config', cfg], target.env);
    await p.waitForLog(/msg="replica lease acquired"/);
    insertRows(db, 100, 20);
    expect(await p.stop('SIGTERM')).toBe(0);
    expect(await litestreamRestore(target, join(dir, 'out.db'))).toBe(contentDigest(db));
    db.close();
  });
});

describe('two replicate processes on one file replica: expiry, and the lease command', () => {
  it('a holder that stops renewing (SIGSTOP) is taken over after the TTL; resumed, it writes nothing more and exits non-zero', async () => {
    const dir = tmp();
    const target = fileTarget(join(dir, 'replica'));
    const { a, db } = await firstInstance(dir, target);
    const genA = (await generations(target))[0]!;
    // b replicates a database of its own (no -exec: it keeps running).
    const bDb = join(dir, 'volume-b.db');
    const b = start(['-config', config(dir, 'b', bDb, target), '-restore-if-db-not-exists']);
    await b.waitForLog(/msg="replica lease held by another instance; waiting/);
    a.pause();
    // Alive but silent: its pid exists, so b must wait out the TTL, then takes over.
    await b.waitForLog(/msg="replica lease taken over from an instance that stopped renewing it"/, 0, 30_000);
    await b.waitForLog(/msg="snapshot written"/, 0, 30_000);
    // Rows a would upload as soon as it runs again, if it did not check its lease first.
    insertRows(db, 5000, 60);
    const beforeResume = (await objects(target)).filter((o) => o.startsWith(genA));
    a.resume();
    expect(await a.exit).not.toBe(0);
    expect(a.lines.join('\n')).toMatch(/msg="replica lease lost; stopped writing"/);
    expect((await objects(target)).filter((o) => o.startsWith(genA))).toEqual(beforeResume);
    db.close();
    // b is the writer now: its restore is the latest.
    const bApp = new Database(bDb);
    bApp.prepare("INSERT INTO t (v, n) VALUES ('written by b', 7)").run();
    bApp.close();
    expect(await b.stop('SIGTERM')).toBe(0);
    expect(await litestreamRestore(target, join(dir, 'restored.db'))).toBe(contentDigest(bDb));
  });

  it('`lease` shows the holder; `lease -break INSTANCE` releases it only for that instance', async () => {
    const dir = tmp();
    const replicaDir = join(dir, 'replica');
    const target = fileTarget(replicaDir);
    const { a, db } = await firstInstance(dir, target);
    const genA = async () => (await generations(target))[0]!;
    // The holder's generation is in the record from its first renewal after the database opened.
    let shown = await runCli(['lease', `file://${replicaDir}`]);
    await waitFor(async () => {
      shown = await runCli(['lease', `file://${replicaDir}`]);
      return shown.stdout.includes(await genA());
    });
    expect(shown.code, shown.stderr).toBe(0);
    const [header, row] = shown.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^name\s+status\s+host\s+pid\s+instance\s+generation\s+since\s+renewed\s+ttl$/);
    const cells = row!.split(/\s+/);
    expect(cells.slice(0, 2)).toEqual(['file', 'held']);
    expect(cells[3]).toBe(String(a.pid));
    expect(cells[5]).toBe(await genA());
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
    const { a, db } = await firstInstance(dir, fileTarget(replicaDir));
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

// The rule is the lease's, the same on every backend: shown on s3, whose requests a proxy can hold back.
describe('a replicator stopped while its first look at the lease is in flight', () => {
  it('restarted after a SIGKILL and stopped before the store answers: it still takes the lease, and its final sync ships every committed row', async () => {
    const dir = tmp();
    const proxy = await startFaultProxy(inject('s3Endpoint'));
    try {
      const target = await s3Target(proxy.endpoint);
      const { a, db, dbPath } = await firstInstance(dir, target);
      expect(await a.stop('SIGKILL')).toBe(null);
      // The application commits more after the crash, then exits (its last connection checkpoints).
      insertRows(db, 1000, 40);
      const committed = contentDigest(db);
      db.close();
      // The restarted replicator (same host, same database) is stopped while the store has not yet
      // answered its first look: its requests are held back at the proxy until after the SIGTERM.
      const gate = proxy.gate(() => true, Number.MAX_SAFE_INTEGER);
      const b = start(['-config', config(dir, 'a', dbPath, target)], target.env);
      await waitFor(() => gate.total > 0);
      b.signal('SIGTERM');
      await b.waitForLog(/msg="stop asked for while the replica lease is being read or taken; waiting for the store to answer"/);
      proxy.gate(() => false, 1); // lets the held requests through
      expect(await b.exit, b.tail()).toBe(0);
      const log = b.lines.join('\n');
      // a's pid is gone on this host: its lease is taken at once, not after the TTL.
      expect(log).toMatch(/msg="replica lease taken over from an instance that stopped renewing it"/);
      expect(log).toMatch(/msg="replica lease released"/);
      // Everything the application committed is in the replica, as the real Litestream restores it.
      expect(await litestreamRestore(target, join(dir, 'restored.db'))).toBe(committed);
    } finally {
      await proxy.close();
    }
  });
});
