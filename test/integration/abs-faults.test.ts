/**
 * The abs backend when Azure Blob (Azurite behind a misbehaving proxy) fails while the app writes:
 * 500s, dropped connections, stalls. The replica retries and catches up with no gap; the real
 * Litestream restores the result to exactly the source.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { AbsReplicaClient } from '../../src/client/abs-client.js';
import { startReplication } from '../../src/replication.js';
import { expectRestoresTo, syncUntilCaughtUp } from '../helpers/cloud-oracle.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer } from '../servers/abs-server.js';
import { startFaultProxy, type FaultMode } from '../servers/fault-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-abs-faults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('abs outages', () => {
  it.each<FaultMode>(['error500', 'drop', 'stall'])('survives %s while the app writes, and catches up with no gap', async (mode) => {
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
        write(n);
        await new Promise((res) => setTimeout(res, 40));
      }
      await expect(r.sync()).rejects.toThrow(/not uploaded to: abs/);
      proxy.mode = 'pass';
      write(21);
      expect(await syncUntilCaughtUp(r, 60)).toBe(true);
      expect(proxy.faults).toBeGreaterThan(0);
      expect(await client.generations()).toHaveLength(1);
    } finally {
      await r.close().catch(() => undefined);
      await proxy.close();
    }
    const config = join(dir, `${mode}.yml`);
    writeFileSync(
      config,
      `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: abs\n        account-name: ${AZURITE_ACCOUNT}\n        account-key: ${AZURITE_KEY}\n        endpoint: ${endpoint}\n        bucket: ${container}\n        path: db\n`,
    );
    await expectRestoresTo('litestream', config, dbPath, join(dir, `${mode}-restored.db`), contentDigest(app));
    app.close();
  }, 120_000);
});
