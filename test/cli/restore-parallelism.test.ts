/**
 * `restore -parallelism N`: at most N WAL indexes are downloaded at once, and N are when there are that
 * many. Proven on the wire: the S3 replica is read through a proxy whose gate holds the segment GETs
 * back until N are in flight together (then lets everything pass), and counts the most ever in flight.
 * A client that ran fewer at once would never open the gate (`reached` stays false); one that ran more
 * would show a higher count.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { collect } from '../../src/client/replica-client.js';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { startReplication } from '../../src/replication.js';
import { runCli } from '../helpers/cli.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { createBucket } from '../servers/s3-server.js';
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js';

let dir: string;
let proxy: FaultProxy;
let config: string;
let dbPath: string;
let digest: string;
let indexes: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stn-parallelism-'));
  const endpoint = inject('s3Endpoint');
  const bucket = `par-${randomBytes(4).toString('hex')}`;
  await createBucket(endpoint, bucket);
  dbPath = join(dir, 'app.db');
  // Our replicator writes the replica (straight to the server): a checkpoint, and so a new WAL index,
  // at nearly every sync.
  const client = new S3ReplicaClient({ bucket, path: 'app', endpoint, accessKeyId: 'k', secretAccessKey: 's' });
  const app = openSourceDb(dbPath);
  const r = await startReplication({ dbPath, replicas: [{ client, syncIntervalMs: 10 }], minCheckpointPageCount: 4 });
  try {
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    for (let round = 0; round < 14; round++) {
      app.transaction(() => {
        for (let i = 0; i < 6; i++) insert.run(textOf(round * 100 + i, 1500), round);
      })();
      await r.sync();
    }
  } finally {
    await r.close();
  }
  digest = contentDigest(app);
  app.close();
  const gen = (await client.generations())[0]!;
  const snapshot = Math.max(...(await collect(client.snapshots(gen))).map((s) => s.index));
  indexes = new Set((await collect(client.walSegments(gen))).map((s) => s.index).filter((i) => i >= snapshot)).size;

  proxy = await startFaultProxy(endpoint);
  config = join(dir, 'litestream.yml');
  writeFileSync(
    config,
    `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: s3\n        bucket: ${bucket}\n        path: app\n        endpoint: ${proxy.endpoint}\n` +
      '        region: us-east-1\n        access-key-id: k\n        secret-access-key: s\n',
  );
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  rmSync(dir, { recursive: true, force: true });
});

const isSegmentGet = (method: string, url: string) =>
  method === 'GET' && /\/generations\/[0-9a-f]{16}\/wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4/.test(url);

describe('restore -parallelism', () => {
  it('has more WAL indexes to restore than the largest parallelism tried', () => {
    expect(indexes).toBeGreaterThan(8);
  });

  it.each([
    [['-parallelism', '1'], 1],
    [['-parallelism=3'], 3],
    [[], 8], // the default
    [['-parallelism', '0'], 1], // at least one
  ])('%j downloads exactly %i WAL indexes at a time, and the result is the source', async (flags, n) => {
    const gate = proxy.gate(isSegmentGet, n);
    const out = join(dir, `out-${flags.join('')}.db`);
    // Node prints its warnings on the user's terminal: a restore must not cause any.
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    let r;
    try {
      r = await runCli(['restore', ...flags, '-config', config, '-o', out, dbPath]);
    } finally {
      process.off('warning', onWarning);
    }
    expect(r.code, r.stderr).toBe(0);
    expect(warnings.filter((w) => /MaxListeners/.test(w))).toEqual([]);
    expect(contentDigest(out)).toBe(digest);
    expect(gate.reached, `${n} segment downloads were never in flight together`).toBe(true);
    expect(gate.maxInFlight).toBe(n);
    expect(gate.total).toBeGreaterThanOrEqual(indexes);
  });

  it('rejects a -parallelism that is not a whole number', async () => {
    const r = await runCli(['restore', '-parallelism', 'many', '-config', config, '-o', join(dir, 'never.db'), dbPath]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error: invalid -parallelism "many": want a whole number\n');
  });
});
