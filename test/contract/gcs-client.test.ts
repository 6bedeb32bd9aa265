import { randomBytes } from 'node:crypto';
import { Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GcsReplicaClient } from '../../src/client/gcs-client.js';
import { ReplicaLease } from '../../src/lease/replica-lease.js';
import { startGcsServer, type GcsServer } from '../servers/gcs-server.js';
import { describeReplicaClientContract } from './replica-client-contract.js';

describeReplicaClientContract(
  'gcs (firebase-tools storage emulator)',
  async () => {
    // The emulator creates a bucket on first use.
    const bucket = `contract-${randomBytes(4).toString('hex')}`;
    const client = new GcsReplicaClient({ bucket, path: 'db/replica', endpoint: inject('gcsEndpoint'), listPageSize: 3 });
    return {
      client,
      cleanup: async () => undefined,
      clockSlackMs: 1500,
      keys: () => rawKeys(inject('gcsEndpoint'), bucket, 'db/replica/'),
    };
  },
  { lease: true },
);

/** Every object name under `prefix`, listed with the SDK directly. */
async function rawKeys(endpoint: string, bucket: string, prefix: string): Promise<string[]> {
  const [files] = await new Storage({ apiEndpoint: endpoint, projectId: 'stn-test' }).bucket(bucket).getFiles({ prefix });
  return files.map((f) => f.name);
}

describe('gcs lease on a store that ignores generation preconditions (the emulator as shipped)', () => {
  let server: GcsServer;
  beforeAll(async () => {
    server = await startGcsServer({ preconditions: false });
  });
  afterAll(() => server.stop());

  it('the start-up probe finds out: LEASE_UNSUPPORTED, naming the replica and `lease: false`; nothing is left behind', async () => {
    const bucket = `ignores-${randomBytes(4).toString('hex')}`;
    const client = new GcsReplicaClient({ bucket, path: 'app', endpoint: server.endpoint });
    await expect(client.probeLease()).rejects.toMatchObject({
      code: 'LEASE_UNSUPPORTED',
      message: expect.stringMatching(
        /second ifGenerationMatch=0 write of app\/lease\/probe-[0-9a-f]{16} succeeded: the store ignores the condition.*set `lease: false` on this replica/,
      ),
    });
    const lease = new ReplicaLease({ client, replica: 'backup', ttlMs: 2000 });
    await expect(lease.acquire()).rejects.toMatchObject({
      code: 'LEASE_UNSUPPORTED',
      message: expect.stringMatching(
        /^replica backup: taking the lease at gcs:\/\/ignores-\w+\/app: the store does not enforce conditional writes/,
      ),
    });
    expect(await rawKeys(server.endpoint, bucket, '')).toEqual([]);
  });
});
