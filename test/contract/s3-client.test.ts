import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { createBucket } from '../servers/s3-server.js';
import { describeReplicaClientContract } from './replica-client-contract.js';

describeReplicaClientContract('s3 (fauxqs)', async () => {
  const endpoint = inject('s3Endpoint');
  const bucket = `contract-${randomBytes(4).toString('hex')}`;
  await createBucket(endpoint, bucket);
  const client = new S3ReplicaClient({ bucket, path: 'db/replica', endpoint, region: 'us-east-1', accessKeyId: 'test', secretAccessKey: 'test', listPageSize: 3 });
  // S3 LastModified has one-second resolution.
  return { client, cleanup: async () => undefined, clockSlackMs: 1500 };
});

describeReplicaClientContract('s3 (fauxqs), checksums only when required', async () => {
  const endpoint = inject('s3Endpoint');
  const bucket = `contract-wr-${randomBytes(4).toString('hex')}`;
  await createBucket(endpoint, bucket);
  const client = new S3ReplicaClient({ bucket, path: '', endpoint, accessKeyId: 'test', secretAccessKey: 'test', checksums: 'when_required', listPageSize: 2 });
  return { client, cleanup: async () => undefined, clockSlackMs: 1500 };
});
