/**
 * The s3 backend when the store misbehaves while the app writes: 500s, 503s, dropped connections and
 * stalls. The app is never blocked, the replica falls behind, retries, and catches up with no gap: the
 * final replica restores with the real Litestream to exactly the source, in one generation.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { expectRestoresTo, replicateThroughOutage } from '../helpers/cloud-oracle.js';
import { contentDigest } from '../helpers/source-db.js';
import { startFaultProxy, type FaultMode } from '../servers/fault-proxy.js';
import { createBucket } from '../servers/s3-server.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-s3-faults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('s3 outages', () => {
  it.each<FaultMode>(['error500', 'error503', 'drop', 'stall'])(
    'survives %s while the app writes, and catches up with no gap',
    async (mode) => {
      const endpoint = inject('s3Endpoint');
      const bucket = `faults-${mode.toLowerCase()}-${randomBytes(3).toString('hex')}`;
      await createBucket(endpoint, bucket);
      const proxy = await startFaultProxy(endpoint);
      const dbPath = join(dir, `${mode}.db`);
      const client = new S3ReplicaClient({
        bucket,
        path: 'db',
        endpoint: proxy.endpoint,
        accessKeyId: 'k',
        secretAccessKey: 's',
        requestTimeoutMs: 500,
      });
      const { app, errors } = await replicateThroughOutage({
        client,
        dbPath,
        proxy,
        mode,
        outageWrites: 30,
        afterWrites: 5,
        attempts: 40,
        failingSync: /not uploaded to: s3/,
      });
      expect(errors.length).toBeGreaterThan(0);
      const config = join(dir, `${mode}.yml`);
      writeFileSync(
        config,
        `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: s3\n        bucket: ${bucket}\n        path: db\n        endpoint: ${endpoint}\n        region: us-east-1\n        access-key-id: k\n        secret-access-key: s\n`,
      );
      await expectRestoresTo('litestream', config, dbPath, join(dir, `${mode}-restored.db`), contentDigest(app));
      app.close();
    },
    120_000,
  );
});
