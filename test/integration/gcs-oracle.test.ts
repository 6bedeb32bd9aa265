/**
 * The gcs backend against Google's Cloud Storage emulator and the real Litestream, both directions:
 * what we replicate, Litestream restores; what Litestream replicates, we restore and list identically;
 * >20 MB snapshots both ways (our chunked resumable upload; the Go client's chunked one); no requests
 * while idle. Both tools find the emulator through STORAGE_EMULATOR_HOST, as a user would point them.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, inject, it } from 'vitest';
import { GcsReplicaClient } from '../../src/client/gcs-client.js';
import {
  expectBigLitestreamSnapshotRestores,
  expectBigSnapshotThenIdle,
  expectRestoresTo,
  replicateSome,
  writeOracleConfig,
} from '../helpers/cloud-oracle.js';
import { expectSameListings } from '../helpers/both-tools.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-gcs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const env = () => ({ STORAGE_EMULATOR_HOST: inject('gcsEndpoint') });

function gcsConfig(dbPath: string, bucket: string, prefix: string): string {
  return writeOracleConfig(join(dir, `${prefix}.yml`), dbPath, [`url: gcs://${bucket}/${prefix}`]);
}

describe('gcs replicas (storage emulator) with the real Litestream', () => {
  const bucket = `oracle-${randomBytes(4).toString('hex')}`;

  it('what we replicate, Litestream restores and lists identically', async () => {
    const dbPath = join(dir, 'ours.db');
    const config = gcsConfig(dbPath, bucket, 'ours');
    const digest = await replicateSome('ours', dbPath, config, 8, env());
    await expectRestoresTo('litestream', config, dbPath, join(dir, 'ours-by-litestream.db'), digest, env());
    // Litestream lists what we wrote exactly as we do.
    await expectSameListings(['-config', config, dbPath], env());
  });

  it('what Litestream replicates, we restore and list identically', async () => {
    const dbPath = join(dir, 'theirs.db');
    const config = gcsConfig(dbPath, bucket, 'theirs');
    const digest = await replicateSome('litestream', dbPath, config, 8, env());
    await expectRestoresTo('ours', config, dbPath, join(dir, 'theirs-by-ours.db'), digest, env());
    await expectSameListings(['-config', config, dbPath], env());
  });

  it('our >20 MB snapshot (chunked resumable upload) restores with Litestream, and an idle replica sends nothing', async () => {
    const dbPath = join(dir, 'big-ours.db');
    const client = new GcsReplicaClient({ bucket, path: 'big-ours', endpoint: inject('gcsEndpoint') });
    await expectBigSnapshotThenIdle(client, dbPath, gcsConfig(dbPath, bucket, 'big-ours'), join(dir, 'big-ours-by-litestream.db'), env());
  }, 120_000);

  it("Litestream's >20 MB snapshot (the Go client's chunked upload) restores with ours", async () => {
    const dbPath = join(dir, 'big-theirs.db');
    await expectBigLitestreamSnapshotRestores(dbPath, gcsConfig(dbPath, bucket, 'big-theirs'), join(dir, 'big-theirs-by-ours.db'), env());
  }, 120_000);
});
