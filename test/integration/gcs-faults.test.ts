/**
 * The gcs backend when the store (the storage emulator behind a misbehaving proxy) fails while the app
 * writes: 500s, 503s, dropped connections, stalls. The app is never blocked; the replica retries and
 * catches up with no gap; the real Litestream restores the result to exactly the source.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { GcsReplicaClient } from '../../src/client/gcs-client.js';
import { startReplication } from '../../src/replication.js';
import { expectRestoresTo, syncUntilCaughtUp } from '../helpers/cloud-oracle.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { startFaultProxy, type FaultMode } from '../servers/fault-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-gcs-faults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('gcs outages', () => {
  it.each<FaultMode>(['error500', 'error503', 'drop', 'stall'])('survives %s while the app writes, and catches up with no gap', async (mode) => {
    const endpoint = inject('gcsEndpoint');
    const bucket = `faults-${mode.toLowerCase()}-${randomBytes(3).toString('hex')}`;
    const proxy = await startFaultProxy(endpoint);
    const client = new GcsReplicaClient({ bucket, path: 'db', endpoint: proxy.endpoint, requestTimeoutMs: 500 });
    const dbPath = join(dir, `${mode}.db`);
    const app = openSourceDb(dbPath);
    const r = await startReplication({ dbPath, replicas: [{ client, syncIntervalMs: 10 }], minCheckpointPageCount: 20 });
    r.on('error', () => undefined);
    try {
      const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
      const write = (n: number) =>
        app.transaction(() => {
          for (let i = 0; i < 10; i++) insert.run(textOf(n * 100 + i, 1200), n);
        })();
      write(0);
      await r.sync();
      proxy.mode = mode;
      for (let n = 1; n <= 20; n++) {
        write(n); // the app's writes go through while the store fails
        await new Promise((res) => setTimeout(res, 40));
      }
      proxy.mode = 'pass';
      write(21);
      expect(await syncUntilCaughtUp(r, 120)).toBe(true);
      expect(proxy.faults).toBeGreaterThan(0);
      expect(await client.generations()).toHaveLength(1);
    } finally {
      await r.close().catch(() => undefined);
      await proxy.close();
    }
    const config = join(dir, `${mode}.yml`);
    writeFileSync(config, `dbs:\n  - path: ${dbPath}\n    replicas:\n      - url: gcs://${bucket}/db\n`);
    await expectRestoresTo('litestream', config, dbPath, join(dir, `${mode}-restored.db`), contentDigest(app), { STORAGE_EMULATOR_HOST: endpoint });
    app.close();
  }, 120_000);
});
