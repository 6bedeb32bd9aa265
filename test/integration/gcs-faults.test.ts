/**
 * The gcs backend when the store (the storage emulator behind a misbehaving proxy) fails while the app
 * writes: 500s, 503s, dropped connections, stalls. The app is never blocked; the replica retries and
 * catches up with no gap; the real Litestream restores the result to exactly the source.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, inject, it } from 'vitest';
import { GcsReplicaClient } from '../../src/client/gcs-client.js';
import { expectRestoresTo, replicateThroughOutage } from '../helpers/cloud-oracle.js';
import { contentDigest } from '../helpers/source-db.js';
import { startFaultProxy, type FaultMode } from '../servers/fault-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-gcs-faults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('gcs outages', () => {
  it.each<FaultMode>(['error500', 'error503', 'drop', 'stall'])(
    'survives %s while the app writes, and catches up with no gap',
    async (mode) => {
      const endpoint = inject('gcsEndpoint');
      const bucket = `faults-${mode.toLowerCase()}-${randomBytes(3).toString('hex')}`;
      const proxy = await startFaultProxy(endpoint);
      const client = new GcsReplicaClient({ bucket, path: 'db', endpoint: proxy.endpoint, requestTimeoutMs: 500 });
      const dbPath = join(dir, `${mode}.db`);
      const { app } = await replicateThroughOutage({ client, dbPath, proxy, mode, outageWrites: 20, afterWrites: 1, attempts: 120 });
      const config = join(dir, `${mode}.yml`);
      writeFileSync(config, `dbs:\n  - path: ${dbPath}\n    replicas:\n      - url: gcs://${bucket}/db\n`);
      await expectRestoresTo('litestream', config, dbPath, join(dir, `${mode}-restored.db`), contentDigest(app), {
        STORAGE_EMULATOR_HOST: endpoint,
      });
      app.close();
    },
    120_000,
  );
});
