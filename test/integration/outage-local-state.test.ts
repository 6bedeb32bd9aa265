/**
 * Local state during a long outage: while the store fails, the shadow WAL keeps every index that is not
 * yet uploaded (nothing is lost) and nothing more; once the store is back and the replica has caught up,
 * the shadow files of uploaded indexes are removed again, so the meta directory is bounded by what is
 * not yet uploaded (plus the one older index kept, as Litestream does).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { collect } from '../../src/client/replica-client.js';
import { startReplication } from '../../src/replication.js';
import { syncUntilCaughtUp } from '../helpers/cloud-oracle.js';
import { openSourceDb, textOf } from '../helpers/source-db.js';
import { createBucket } from '../servers/s3-server.js';
import { startFaultProxy } from '../servers/fault-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-outage-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function shadowFiles(dbPath: string, generation: string): { names: string[]; bytes: number } {
  const wal = join(dir, `.${dbPath.split('/').pop()}-litestream`, 'generations', generation, 'wal');
  const names = existsSync(wal)
    ? readdirSync(wal)
        .filter((n) => n.endsWith('.wal'))
        .sort()
    : [];
  return { names, bytes: names.reduce((sum, n) => sum + statSync(join(wal, n)).size, 0) };
}

describe('local state through an outage', () => {
  it('keeps every unuploaded WAL index while the store is down, and only that once it is back', async () => {
    const endpoint = inject('s3Endpoint');
    const bucket = `outage-${randomBytes(4).toString('hex')}`;
    await createBucket(endpoint, bucket);
    const proxy = await startFaultProxy(endpoint);
    const dbPath = join(dir, 'app.db');
    const app = openSourceDb(dbPath);
    const client = new S3ReplicaClient({
      bucket,
      path: 'db',
      endpoint: proxy.endpoint,
      accessKeyId: 'k',
      secretAccessKey: 's',
      requestTimeoutMs: 500,
    });
    // Small checkpoint threshold: the outage spans many WAL indexes.
    const r = await startReplication({ dbPath, replicas: [{ client, syncIntervalMs: 10 }], minCheckpointPageCount: 20 });
    r.on('error', () => undefined);
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    const write = (n: number) =>
      app.transaction(() => {
        for (let i = 0; i < 10; i++) insert.run(textOf(n * 100 + i, 1200), n);
      })();
    try {
      write(0);
      await r.sync();
      const generation = r.shipper.pos()!.generation;
      const uploadedBefore = (await collect(client.walSegments(generation))).map((s) => s.index);
      proxy.mode = 'error503';
      for (let n = 1; n <= 40; n++) {
        write(n);
        await new Promise((res) => setTimeout(res, 20));
      }
      await r.sync().catch(() => undefined);
      const during = shadowFiles(dbPath, generation);
      // Every index written during the outage is still on local disk (several: checkpoints went on).
      const lastUploaded = Math.max(...uploadedBefore);
      const local = during.names.map((n) => parseInt(n, 16));
      expect(Math.max(...local) - lastUploaded).toBeGreaterThanOrEqual(3);
      for (let i = lastUploaded + 1; i <= Math.max(...local); i++) expect(local).toContain(i);

      proxy.mode = 'pass';
      write(41);
      expect(await syncUntilCaughtUp(r, 60)).toBe(true);
      // One more cycle to let the shipper prune what is now uploaded.
      write(42);
      await r.sync();
      const after = shadowFiles(dbPath, generation);
      // At most: the one older index kept, the index whose upload finished last, and the current one.
      expect(after.names.length).toBeLessThanOrEqual(3);
      expect(after.bytes).toBeLessThan(during.bytes);
      // And the replica holds every index the outage produced.
      const uploaded = new Set((await collect(client.walSegments(generation))).map((s) => s.index));
      for (const i of local) if (i > lastUploaded) expect(uploaded.has(i)).toBe(true);
    } finally {
      await r.close().catch(() => undefined);
      await proxy.close();
      app.close();
    }
  }, 120_000);
});
