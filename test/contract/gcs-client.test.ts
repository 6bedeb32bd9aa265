import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { GcsReplicaClient } from '../../src/client/gcs-client.js';
import { describeReplicaClientContract } from './replica-client-contract.js';

describeReplicaClientContract('gcs (firebase-tools storage emulator)', async () => {
  // The emulator creates a bucket on first use.
  const bucket = `contract-${randomBytes(4).toString('hex')}`;
  const client = new GcsReplicaClient({ bucket, path: 'db/replica', endpoint: inject('gcsEndpoint'), listPageSize: 3 });
  return { client, cleanup: async () => undefined, clockSlackMs: 1500 };
}, { lease: true });
