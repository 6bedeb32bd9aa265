/**
 * Shared steps of the cloud-backend oracle tests: replicate a database with either tool through a
 * config file (the same file works for both), and compare both tools' listings of the result.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { expect } from 'vitest';
import { runCli } from './cli.js';
import { mixedWrite, waitForUpload } from './fixtures.js';
import { cleanEnv, litestreamBin, stnReplicateBin } from '../../bench/lib/shared.js';
import { LoggedProcess, parseTable, runLitestream } from './oracle.js';
import { pollsOf } from './shipper-polls.js';
import { contentDigest, openSourceDb, textOf } from './source-db.js';
import type { FaultMode } from '../servers/fault-proxy.js';
import { collect, type ReplicaClient } from '../../src/client/replica-client.js';
import { startReplication } from '../../src/replication.js';
import type { AgeOptions } from '../../src/replica/object-codec.js';

const bin = stnReplicateBin();

export type Tool = 'ours' | 'litestream';

/** Extra environment for both tools (e.g. STORAGE_EMULATOR_HOST); never the host's own. */
export type ToolEnv = Record<string, string>;

export function startReplicator(tool: Tool, config: string, env: ToolEnv = {}): LoggedProcess {
  const [cmd, args] =
    tool === 'ours' ? [process.execPath, [bin, 'replicate', '-config', config]] : [litestreamBin(), ['replicate', '-config', config]];
  return new LoggedProcess(config, spawn(cmd, args, { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** Replicates `writes` varied transactions with `tool`, waiting for each upload; returns the source digest. */
export async function replicateSome(tool: Tool, dbPath: string, config: string, writes: number, env: ToolEnv = {}): Promise<string> {
  const db = openSourceDb(dbPath);
  const p = startReplicator(tool, config, env);
  try {
    await p.waitForLog(/snapshot written/);
    for (let step = 0; step < writes; step++) {
      const after = p.lines.length;
      db.transaction(mixedWrite(db, step))();
      await waitForUpload(p, dbPath, after);
    }
  } finally {
    await p.stop(tool === 'ours' ? 'SIGTERM' : 'SIGINT');
  }
  const digest = contentDigest(db);
  db.close();
  return digest;
}

/** Restores `dbPath` through `config` with `tool` into `out`; the result must have `digest`. */
export async function expectRestoresTo(
  tool: Tool,
  config: string,
  dbPath: string,
  out: string,
  digest: string,
  env: ToolEnv = {},
): Promise<void> {
  const args = ['restore', '-config', config, '-o', out, dbPath];
  const r = tool === 'ours' ? await runCli(args, { env }) : await runLitestream(args, env);
  expect(r.code, r.stderr).toBe(0);
  expect(contentDigest(out)).toBe(digest);
}

/** Calls sync() until it succeeds (the store answers again) or `attempts` run out, 250 ms apart. */
export async function syncUntilCaughtUp(r: { sync(): Promise<void> }, attempts: number): Promise<boolean> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const ok = await r.sync().then(
      () => true,
      () => new Promise<boolean>((res) => setTimeout(() => res(false), 250)),
    );
    if (ok) return true;
  }
  return false;
}

/** Fills a new database with ~25 MB of barely compressible rows, so its snapshot exceeds 20 MB. */
export function writeBigDatabase(dbPath: string): Database.Database {
  const app = openSourceDb(dbPath);
  const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
  app.transaction(() => {
    for (let i = 0; i < 7500; i++) insert.run(randomBytes(2500).toString('base64'), i);
  })();
  return app;
}

/**
 * Our replicator uploads a >20 MB snapshot through `client` (the store's multipart, block or chunked
 * path), then sits idle for three polls of the shipper without a single request; Litestream restores
 * the result through `config` to the source's content.
 */
export async function expectBigSnapshotThenIdle(
  client: ReplicaClient,
  dbPath: string,
  config: string,
  out: string,
  env: ToolEnv = {},
): Promise<void> {
  const app = writeBigDatabase(dbPath);
  // In-process: pollsOf wraps the shipper itself.
  const r = await startReplication({ dbPath, monitorIntervalMs: 100, replicas: [{ client, syncIntervalMs: 10 }], inline: true });
  try {
    app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('after the snapshot', -1);
    await r.sync();
    const before = client.requestCounts();
    expect(before.PUT).toBeGreaterThanOrEqual(2); // the snapshot and at least one segment
    await pollsOf(r.shipper, 3);
    expect(client.requestCounts()).toEqual(before);
  } finally {
    await r.close();
  }
  const snapshots = await collect(client.snapshots(r.shipper.pos()!.generation));
  expect(snapshots[0]!.size).toBeGreaterThan(20 * 1024 * 1024);
  await expectRestoresTo('litestream', config, dbPath, out, contentDigest(app), env);
  app.close();
}

/** Litestream uploads a >20 MB snapshot through `config`; ours restores it to the source's content. */
export async function expectBigLitestreamSnapshotRestores(dbPath: string, config: string, out: string, env: ToolEnv = {}): Promise<void> {
  const app = writeBigDatabase(dbPath);
  const p = startReplicator('litestream', config, env);
  try {
    await p.waitForLog(/snapshot written/);
  } finally {
    await p.stop('SIGINT');
  }
  const r = await runCli(['snapshots', '-config', config, dbPath], { env });
  const sizes = parseTable(r.stdout).map((row) => Number(row.size));
  expect(Math.max(...sizes)).toBeGreaterThan(20 * 1024 * 1024);
  await expectRestoresTo('ours', config, dbPath, out, contentDigest(app), env);
  app.close();
}

/**
 * Writes the config both tools replicate with in the oracle tests: one database, fast checkpoints and
 * syncs, and one replica given by its own YAML keys (`key: value` lines, the first one starting the item).
 */
export function writeOracleConfig(path: string, dbPath: string, replica: string[]): string {
  writeFileSync(
    path,
    [
      'logging:',
      '  level: debug',
      'dbs:',
      `  - path: ${dbPath}`,
      '    min-checkpoint-page-count: 5',
      '    monitor-interval: 50ms',
      '    replicas:',
      ...replica.map((line, i) => `${i === 0 ? '      - ' : '        '}${line}`),
      '        sync-interval: 10ms',
      '',
    ].join('\n'),
  );
  return path;
}

/** What an outage needs of a fault proxy: the HTTP one (fault-proxy.ts) or the TCP one (tcp-proxy.ts). */
export interface OutageProxy<M extends string> {
  mode: M | 'pass';
  readonly faults: number;
  close(): Promise<void>;
}

export interface OutageRun<M extends string = FaultMode> {
  client: ReplicaClient;
  dbPath: string;
  proxy: OutageProxy<M>;
  mode: M;
  /** Transactions committed while the store fails, 40 ms apart. */
  outageWrites: number;
  /** Transactions committed once it answers again. */
  afterWrites: number;
  /** sync() tries (250 ms apart) allowed for catching up. */
  attempts: number;
  /** When set, a sync() during the outage must fail with this message. */
  failingSync?: RegExp;
  /** The replica's age keys, if any. */
  age?: AgeOptions;
}

/**
 * The app writes through a store outage: the writes go through, the replica falls behind, and once the
 * store answers again it catches up in the same generation. Returns the app's database (open, for the
 * caller's restore check) and the replication errors reported on the way.
 */
export async function replicateThroughOutage<M extends string>(o: OutageRun<M>): Promise<{ app: Database.Database; errors: unknown[] }> {
  const app = openSourceDb(o.dbPath);
  const errors: unknown[] = [];
  const r = await startReplication({
    dbPath: o.dbPath,
    replicas: [{ client: o.client, syncIntervalMs: 10, age: o.age }],
    minCheckpointPageCount: 20,
  });
  r.on('error', (e) => errors.push(e.error));
  try {
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    const write = (n: number) =>
      app.transaction(() => {
        for (let i = 0; i < 10; i++) insert.run(textOf(n * 100 + i, 1200), n);
      })();
    write(0);
    await r.sync();
    o.proxy.mode = o.mode;
    for (let n = 1; n <= o.outageWrites; n++) {
      write(n); // the app keeps committing while the store is down
      await new Promise((res) => setTimeout(res, 40));
    }
    if (o.failingSync) await expect(r.sync()).rejects.toThrow(o.failingSync);
    o.proxy.mode = 'pass';
    for (let n = o.outageWrites + 1; n <= o.outageWrites + o.afterWrites; n++) write(n);
    // Retries with backoff bring it back; sync() succeeds once the store answers again.
    expect(await syncUntilCaughtUp(r, o.attempts)).toBe(true);
    expect(o.proxy.faults).toBeGreaterThan(0);
    expect(await o.client.generations()).toHaveLength(1);
  } finally {
    await r.close().catch(() => undefined);
    await o.proxy.close();
  }
  return { app, errors };
}
