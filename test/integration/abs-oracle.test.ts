/**
 * The abs backend against Azurite and the real Litestream, both directions: what we replicate,
 * Litestream restores; what Litestream replicates, we restore and list identically.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, inject, it } from 'vitest';
import { AbsReplicaClient } from '../../src/client/abs-client.js';
import {
  expectBigLitestreamSnapshotRestores,
  expectBigSnapshotThenIdle,
  expectRestoresTo,
  replicateSome,
  writeOracleConfig,
} from '../helpers/cloud-oracle.js';
import { expectSameListings } from '../helpers/both-tools.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer } from '../servers/abs-server.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-abs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function absConfig(dbPath: string, container: string, prefix: string): string {
  return writeOracleConfig(join(dir, `${prefix}.yml`), dbPath, [
    'type: abs',
    `account-name: ${AZURITE_ACCOUNT}`,
    `account-key: ${AZURITE_KEY}`,
    `endpoint: ${inject('absEndpoint')}`,
    `bucket: ${container}`,
    `path: ${prefix}`,
  ]);
}

describe('abs replicas (azurite) with the real Litestream', () => {
  const container = `oracle-${randomBytes(4).toString('hex')}`;

  it('what we replicate, Litestream restores and lists identically', async () => {
    await createContainer(inject('absEndpoint'), container);
    const dbPath = join(dir, 'ours.db');
    const config = absConfig(dbPath, container, 'ours');
    const digest = await replicateSome('ours', dbPath, config, 8);
    await expectRestoresTo('litestream', config, dbPath, join(dir, 'ours-by-litestream.db'), digest);
    // Litestream lists what we wrote exactly as we do.
    await expectSameListings(['-config', config, dbPath]);
  });

  it('what Litestream replicates, we restore and list identically', async () => {
    const dbPath = join(dir, 'theirs.db');
    const config = absConfig(dbPath, container, 'theirs');
    const digest = await replicateSome('litestream', dbPath, config, 8);
    await expectRestoresTo('ours', config, dbPath, join(dir, 'theirs-by-ours.db'), digest);
    await expectSameListings(['-config', config, dbPath]);
  });

  it('our >20 MB snapshot (staged blocks) restores with Litestream, and an idle replica sends nothing', async () => {
    const dbPath = join(dir, 'big-ours.db');
    const client = new AbsReplicaClient({
      accountName: AZURITE_ACCOUNT,
      accountKey: AZURITE_KEY,
      bucket: container,
      path: 'big-ours',
      endpoint: inject('absEndpoint'),
    });
    await expectBigSnapshotThenIdle(client, dbPath, absConfig(dbPath, container, 'big-ours'), join(dir, 'big-ours-by-litestream.db'));
  }, 120_000);

  it("Litestream's >20 MB snapshot restores with ours", async () => {
    const dbPath = join(dir, 'big-theirs.db');
    await expectBigLitestreamSnapshotRestores(dbPath, absConfig(dbPath, container, 'big-theirs'), join(dir, 'big-theirs-by-ours.db'));
  }, 120_000);
});
