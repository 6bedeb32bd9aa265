import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { AbsReplicaClient } from '../../src/client/abs-client.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer } from '../servers/abs-server.js';
import { describeReplicaClientContract } from './replica-client-contract.js';

describeReplicaClientContract('abs (azurite)', async () => {
  const endpoint = inject('absEndpoint');
  const container = `contract-${randomBytes(4).toString('hex')}`;
  await createContainer(endpoint, container);
  const client = new AbsReplicaClient({ accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, bucket: container, path: 'db/replica', endpoint, listPageSize: 3 });
  return { client, cleanup: async () => undefined, clockSlackMs: 1500 };
}, { lease: true });
