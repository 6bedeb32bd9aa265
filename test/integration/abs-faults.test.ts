/**
 * The abs backend when Azure Blob (Azurite behind a misbehaving proxy) fails while the app writes:
 * 500s, dropped connections, stalls. The replica retries and catches up with no gap; the real
 * Litestream restores the result to exactly the source.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, inject, it } from 'vitest';
import { AbsReplicaClient } from '../../src/client/abs-client.js';
import { expectRestoresTo, replicateThroughOutage } from '../helpers/cloud-oracle.js';
import { contentDigest } from '../helpers/source-db.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer } from '../servers/abs-server.js';
import { startFaultProxy, type FaultMode } from '../servers/fault-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-abs-faults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('abs outages', () => {
  it.each<FaultMode>(['error500', 'drop', 'stall'])(
    'survives %s while the app writes, and catches up with no gap',
    async (mode) => {
      const endpoint = inject('absEndpoint');
      const container = `faults-${mode.toLowerCase()}-${randomBytes(3).toString('hex')}`;
      await createContainer(endpoint, container);
      const origin = new URL(endpoint);
      const proxy = await startFaultProxy(origin.origin);
      const client = new AbsReplicaClient({
        accountName: AZURITE_ACCOUNT,
        accountKey: AZURITE_KEY,
        bucket: container,
        path: 'db',
        endpoint: `${proxy.endpoint}${origin.pathname}`,
        tryTimeoutMs: 500,
      });
      const dbPath = join(dir, `${mode}.db`);
      const { app } = await replicateThroughOutage({
        client,
        dbPath,
        proxy,
        mode,
        outageWrites: 20,
        afterWrites: 1,
        attempts: 60,
        failingSync: /not uploaded to: abs/,
      });
      const config = join(dir, `${mode}.yml`);
      writeFileSync(
        config,
        `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: abs\n        account-name: ${AZURITE_ACCOUNT}\n        account-key: ${AZURITE_KEY}\n        endpoint: ${endpoint}\n        bucket: ${container}\n        path: db\n`,
      );
      await expectRestoresTo('litestream', config, dbPath, join(dir, `${mode}-restored.db`), contentDigest(app));
      app.close();
    },
    120_000,
  );
});
