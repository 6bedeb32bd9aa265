/**
 * `stn-replicate replicate` with `addr`: /metrics and /healthz of a real process replicating to S3
 * (fauxqs) through the fault proxy while an application process writes. Every Litestream metric name is
 * there with Litestream's labels and its values move; cutting the store makes the lag gauge rise and
 * /healthz answer 503, healing it brings the lag back to 0 and /healthz to 200. The real Litestream,
 * scraped on the same kind of setup, is the oracle for names and label names. Also: a port in use and
 * an address without a port end the command before it replicates.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { writeFromProcess } from '../helpers/app-process.js';
import { runBin, spawnBin } from '../helpers/cli.js';
import { freePort } from '../helpers/free-port.js';
import { cleanEnv, litestreamBin } from '../../bench/lib/shared.js';
import { LoggedProcess } from '../helpers/oracle.js';
import { sqliteOnce } from '../helpers/sqlite-cli.js';
import { SOURCE_SCHEMA } from '../helpers/source-db.js';
import { startFaultProxy } from '../servers/fault-proxy.js';
import { createBucket } from '../servers/s3-server.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';
import { describeError } from '../../src/errors.js';

const LITESTREAM_NAMES = [
  'litestream_db_size',
  'litestream_wal_size',
  'litestream_total_wal_bytes',
  'litestream_shadow_wal_index',
  'litestream_shadow_wal_size',
  'litestream_sync_count',
  'litestream_sync_error_count',
  'litestream_sync_seconds',
  'litestream_checkpoint_count',
  'litestream_checkpoint_error_count',
  'litestream_checkpoint_seconds',
  'litestream_replica_wal_bytes',
  'litestream_replica_wal_index',
  'litestream_replica_wal_offset',
  'litestream_replica_operation_total',
  'litestream_replica_operation_bytes',
  'litestream_replica_validation_total',
];
const LABELS: Record<string, string[]> = {
  litestream_checkpoint_count: ['db', 'mode'],
  litestream_checkpoint_error_count: ['db', 'mode'],
  litestream_checkpoint_seconds: ['db', 'mode'],
  litestream_replica_wal_bytes: ['db', 'name'],
  litestream_replica_wal_index: ['db', 'name'],
  litestream_replica_wal_offset: ['db', 'name'],
  litestream_replica_operation_total: ['operation', 'replica_type'],
  litestream_replica_operation_bytes: ['operation', 'replica_type'],
  litestream_replica_validation_total: ['db', 'name', 'status'],
  stn_replica_lag_seconds: ['db', 'name'],
  stn_replica_last_upload_timestamp_seconds: ['db', 'name'],
};

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (comments skipped). */
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/** Each name's set of label names, as "name: a,b". */
function labelShapes(samples: Sample[], prefix: string): Set<string> {
  return new Set(samples.filter((s) => s.name.startsWith(prefix)).map((s) => `${s.name}: ${Object.keys(s.labels).sort().join(',')}`));
}

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return parseMetrics(await res.text());
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${describeError(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An application that keeps writing from short-lived processes until stopped. */
function keepWriting(dbPath: string): { stop(): Promise<void>; rows(): number } {
  let stopped = false;
  let n = 1;
  const loop = (async () => {
    while (!stopped) {
      await writeFromProcess('node', dbPath, n, 10, 400);
      n += 10;
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
    },
    rows: () => n - 1,
  };
}

const tmp = tempDirs('stn-metrics-');
const procs = closeAfterEach((p: LoggedProcess) => p.stop('SIGKILL'));
const cleanups = closeAfterEach((c: () => Promise<unknown>) => c().catch(() => undefined));

function s3Config(o: { addr: string; dbPath: string; bucket: string; endpoint: string; extra?: string[] }): string {
  return [
    `addr: "${o.addr}"`,
    ...(o.extra ?? []),
    'logging:',
    '  level: debug',
    'dbs:',
    `  - path: ${o.dbPath}`,
    '    monitor-interval: 100ms',
    '    min-checkpoint-page-count: 4',
    '    replicas:',
    '      - type: s3',
    '        name: remote',
    `        bucket: ${o.bucket}`,
    '        path: db',
    `        endpoint: ${o.endpoint}`,
    '        region: us-east-1',
    '        access-key-id: k',
    '        secret-access-key: s',
    '        sync-interval: 100ms',
    '',
  ].join('\n');
}

async function newDb(dir: string): Promise<string> {
  const dbPath = join(dir, 'app.db');
  await sqliteOnce(dbPath, `PRAGMA journal_mode=WAL; ${SOURCE_SCHEMA}`);
  return dbPath;
}

describe('replicate with addr: /metrics and /healthz', () => {
  it('serves every metric while writing; lag rises and /healthz is 503 while the store is cut, both recover', async () => {
    const dir = tmp();
    const endpoint = inject('s3Endpoint');
    const bucket = `metrics-${randomBytes(3).toString('hex')}`;
    await createBucket(endpoint, bucket);
    const proxy = await startFaultProxy(endpoint);
    cleanups.push(() => proxy.close());
    const dbPath = await newDb(dir);
    const config = join(dir, 'stn.yml');
    writeFileSync(config, s3Config({ addr: '127.0.0.1:0', dbPath, bucket, endpoint: proxy.endpoint, extra: ['health-max-lag: 1s'] }));
    const p = spawnBin(['replicate', '-config', config]);
    procs.push(p);
    const at = await p.waitForLog(/msg="serving metrics"/);
    const url = `http://${/addr=(\S+)/.exec(p.lines[at]!)![1]}`;
    await p.waitForLog(/msg="snapshot written"/);

    const app = keepWriting(dbPath);
    cleanups.push(() => app.stop());
    // Written long enough for checkpoints and several uploads.
    const first = await waitFor('checkpoints and uploads', async () => {
      const s = await scrape(url);
      return value(s, 'litestream_checkpoint_count', { db: dbPath }) !== undefined &&
        (value(s, 'litestream_replica_wal_bytes', { db: dbPath, name: 'remote' }) ?? 0) > 0
        ? s
        : undefined;
    });
    const names = new Set(first.map((s) => s.name));
    for (const n of [...LITESTREAM_NAMES, 'stn_replica_lag_seconds', 'stn_replica_last_upload_timestamp_seconds'])
      expect(names, n).toContain(n);
    for (const s of first.filter((x) => x.name.startsWith('litestream_') || x.name.startsWith('stn_'))) {
      expect(Object.keys(s.labels).sort(), s.name).toEqual(LABELS[s.name] ?? ['db']);
      if ('db' in s.labels) expect(s.labels.db).toBe(dbPath);
      if ('name' in s.labels) expect(s.labels.name).toBe('remote');
      if ('replica_type' in s.labels) expect(s.labels.replica_type).toBe('s3');
    }
    expect(value(first, 'litestream_replica_validation_total', { status: 'ok' })).toBe(0);
    expect(value(first, 'litestream_replica_validation_total', { status: 'error' })).toBe(0);
    expect(value(first, 'litestream_replica_operation_total', { operation: 'PUT' })).toBeGreaterThan(0);
    expect(value(first, 'litestream_replica_operation_bytes', { operation: 'PUT' })).toBeGreaterThan(0);
    expect(value(first, 'litestream_db_size', {})).toBeGreaterThan(0);
    // Node's process metrics, where Litestream has Go's.
    expect(names).toContain('process_cpu_seconds_total');

    // Values move while the app writes.
    const moving = [
      'litestream_sync_count',
      'litestream_total_wal_bytes',
      'litestream_replica_wal_bytes',
      'litestream_replica_operation_total',
    ];
    await waitFor('every counter to move', async () => {
      const s = await scrape(url);
      return moving.every(
        (n) => (value(s, n, { operation: 'PUT' }) ?? value(s, n, {}))! > (value(first, n, { operation: 'PUT' }) ?? value(first, n, {}))!,
      )
        ? s
        : undefined;
    });
    expect((await fetch(`${url}/healthz`)).status).toBe(200);

    // The store goes away; the app keeps writing.
    proxy.mode = 'error503';
    const cut = await waitFor('the lag to pass the health threshold', async () => {
      const s = await scrape(url);
      return value(s, 'stn_replica_lag_seconds', { name: 'remote' })! > 1.5 ? s : undefined;
    });
    const healthz = await fetch(`${url}/healthz`);
    expect(healthz.status).toBe(503);
    const report = (await healthz.json()) as {
      status: string;
      replicas: { db: string; name: string; behind: boolean; lagSeconds: number }[];
    };
    expect(report.status).toBe('behind');
    expect(report.replicas).toEqual([expect.objectContaining({ db: dbPath, name: 'remote', behind: true })]);
    expect(report.replicas[0]!.lagSeconds).toBeGreaterThan(1);
    // It keeps rising while nothing is uploaded.
    const lagAtCut = value(cut, 'stn_replica_lag_seconds', { name: 'remote' })!;
    await waitFor('the lag to keep rising', async () => {
      const s = await scrape(url);
      return value(s, 'stn_replica_lag_seconds', { name: 'remote' })! > lagAtCut + 0.5 ? s : undefined;
    });

    // Back: caught up, lag 0, healthy.
    proxy.mode = 'pass';
    await app.stop();
    await waitFor('the lag back to 0', async () => {
      const s = await scrape(url);
      return value(s, 'stn_replica_lag_seconds', { name: 'remote' }) === 0 ? s : undefined;
    });
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const last = await scrape(url);
    expect(value(last, 'stn_replica_last_upload_timestamp_seconds', { name: 'remote' })! * 1000).toBeGreaterThan(Date.now() - 60_000);

    expect(await p.stop('SIGTERM')).toBe(0);
    await expect(fetch(`${url}/metrics`)).rejects.toThrow();
  }, 180_000);

  it("has Litestream's metric names and label names (the real Litestream, scraped on the same setup)", async () => {
    const endpoint = inject('s3Endpoint');
    const shapes: Record<string, Set<string>> = {};
    for (const tool of ['litestream', 'stn'] as const) {
      const dir = tmp();
      const bucket = `shape-${tool}-${randomBytes(3).toString('hex')}`;
      await createBucket(endpoint, bucket);
      const dbPath = await newDb(dir);
      const port = await freePort();
      const config = join(dir, `${tool}.yml`);
      writeFileSync(config, s3Config({ addr: `127.0.0.1:${port}`, dbPath, bucket, endpoint }));
      const p =
        tool === 'litestream'
          ? new LoggedProcess(
              config,
              spawn(litestreamBin(), ['replicate', '-config', config], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] }),
            )
          : spawnBin(['replicate', '-config', config]);
      procs.push(p);
      await p.waitForLog(/msg="snapshot written"|snapshot written/);
      const app = keepWriting(dbPath);
      cleanups.push(() => app.stop());
      const samples = await waitFor(`${tool}: checkpoints and wal uploads`, async () => {
        const s = await scrape(`http://127.0.0.1:${port}`);
        return value(s, 'litestream_checkpoint_count', {}) !== undefined &&
          (value(s, 'litestream_replica_wal_bytes', {}) ?? 0) > 0 &&
          value(s, 'litestream_replica_wal_index', {}) !== undefined
          ? s
          : undefined;
      });
      await app.stop();
      shapes[tool] = labelShapes(samples, 'litestream_');
      await p.stop('SIGINT');
    }
    // Every series shape Litestream shows, we show. (Ours may have more: checkpoint_error_count is shown
    // at 0 once a checkpoint ran, where Litestream shows it after the first error only.)
    expect([...shapes.litestream!].filter((x) => !shapes.stn!.has(x))).toEqual([]);
    expect([...shapes.stn!].filter((x) => !shapes.litestream!.has(x))).toEqual(['litestream_checkpoint_error_count: db,mode']);
  }, 120_000);

  it('fails before replicating when the port is taken, or the address has no port', async () => {
    const dir = tmp();
    const dbPath = await newDb(dir);
    const taken: Server = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => taken.close(r)));
    const port = (taken.address() as { port: number }).port;
    const config = join(dir, 'busy.yml');
    writeFileSync(config, `addr: "127.0.0.1:${port}"\ndbs:\n  - path: ${dbPath}\n    replicas:\n      - path: ${join(dir, 'replica')}\n`);
    const busy = await runBin(['replicate', '-config', config]);
    expect(busy.code).not.toBe(0);
    expect(busy.stderr + busy.stdout).toMatch(new RegExp(`metrics server: listening on 127\\.0\\.0\\.1:${port}: address already in use`));
    expect(busy.stdout + busy.stderr).not.toMatch(/replicating|snapshot written/);

    writeFileSync(config, `addr: "localhost"\ndbs:\n  - path: ${dbPath}\n    replicas:\n      - path: ${join(dir, 'replica')}\n`);
    const noPort = await runBin(['replicate', '-config', config]);
    expect(noPort.code).not.toBe(0);
    expect(noPort.stderr + noPort.stdout).toMatch(/must specify port for bind address/);
  });
});
