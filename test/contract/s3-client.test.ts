import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { createBucket, startS3Server, type S3Server } from '../servers/s3-server.js';
import { ReplicaLease } from '../../src/lease/replica-lease.js';
import { describeReplicaClientContract } from './replica-client-contract.js';

describeReplicaClientContract('s3 (fauxqs)', async () => {
  const endpoint = inject('s3Endpoint');
  const bucket = `contract-${randomBytes(4).toString('hex')}`;
  await createBucket(endpoint, bucket);
  const client = new S3ReplicaClient({ bucket, path: 'db/replica', endpoint, region: 'us-east-1', accessKeyId: 'test', secretAccessKey: 'test', listPageSize: 3 });
  // S3 LastModified has one-second resolution.
  return { client, cleanup: async () => undefined, clockSlackMs: 1500, keys: () => rawKeys(endpoint, bucket, 'db/replica/') };
}, { lease: true });

describeReplicaClientContract('s3 (fauxqs), checksums only when required', async () => {
  const endpoint = inject('s3Endpoint');
  const bucket = `contract-wr-${randomBytes(4).toString('hex')}`;
  await createBucket(endpoint, bucket);
  const client = new S3ReplicaClient({ bucket, path: '', endpoint, accessKeyId: 'test', secretAccessKey: 'test', checksums: 'when_required', listPageSize: 2 });
  return { client, cleanup: async () => undefined, clockSlackMs: 1500, keys: () => rawKeys(endpoint, bucket, '') };
}, { lease: true });

/** Every key under `prefix`, listed with the SDK directly. */
async function rawKeys(endpoint: string, bucket: string, prefix: string): Promise<string[]> {
  const raw = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  try {
    const out = await raw.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (out.Contents ?? []).map((o) => o.Key!);
  } finally {
    raw.destroy();
  }
}

describe('s3 lease on a store that ignores conditional writes (fauxqs as shipped)', () => {
  let server: S3Server;
  beforeAll(async () => {
    server = await startS3Server({ conditionalWrites: false });
  });
  afterAll(() => server.stop());

  it('the start-up probe finds out: LEASE_UNSUPPORTED, naming the replica and `lease: false`; nothing is left behind', async () => {
    const bucket = `ignores-${randomBytes(4).toString('hex')}`;
    await createBucket(server.endpoint, bucket);
    const client = new S3ReplicaClient({ bucket, path: 'app', endpoint: server.endpoint, region: 'us-east-1', accessKeyId: 'test', secretAccessKey: 'test' });
    await expect(client.probeLease()).rejects.toMatchObject({ code: 'LEASE_UNSUPPORTED', message: expect.stringMatching(/second If-None-Match: \* write of app\/lease\/probe-[0-9a-f]{16} succeeded: the store ignores the condition.*set `lease: false` on this replica/) });
    const lease = new ReplicaLease({ client, replica: 'backup', ttlMs: 2000 });
    await expect(lease.acquire()).rejects.toMatchObject({ code: 'LEASE_UNSUPPORTED', message: expect.stringMatching(/^replica backup: taking the lease at s3:\/\/ignores-\w+\/app: the store does not enforce conditional writes/) });
    expect(lease.state).toBe('idle');
    // The probe's object is gone, and no lease object was written.
    expect(await rawKeys(server.endpoint, bucket, '')).toEqual([]);
  });
});

describe('s3 deleteGeneration', () => {
  it('deletes the generation by its prefix with the slash, never a key that only starts with its name (P6)', async () => {
    const endpoint = inject('s3Endpoint');
    const bucket = `p6-${randomBytes(4).toString('hex')}`;
    await createBucket(endpoint, bucket);
    const client = new S3ReplicaClient({ bucket, path: 'db', endpoint, region: 'us-east-1', accessKeyId: 'test', secretAccessKey: 'test' });
    const gen = '0123456789abcdef';
    await client.writeSnapshot(gen, 0, Readable.from([Buffer.from('snapshot')]));
    await client.writeWalSegment({ generation: gen, index: 0, offset: 0 }, Readable.from([Buffer.from('segment')]));
    // Written by someone else under the same path: Litestream's prefix (no slash) would take them too.
    const raw = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    const foreign = [`db/generations/${gen}0/snapshots/00000000.snapshot.lz4`, `db/generations/${gen}.notes`];
    for (const Key of foreign) await raw.send(new PutObjectCommand({ Bucket: bucket, Key, Body: 'keep me' }));
    await client.deleteGeneration(gen);
    const left = await raw.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'db/' }));
    expect((left.Contents ?? []).map((o) => o.Key).sort()).toEqual([...foreign].sort());
    raw.destroy();
  });
});
