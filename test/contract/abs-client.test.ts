import { randomBytes } from 'node:crypto';
import { ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { inject } from 'vitest';
import { AbsReplicaClient } from '../../src/client/abs-client.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer } from '../servers/abs-server.js';
import { describeReplicaClientContract } from './replica-client-contract.js';

describeReplicaClientContract(
  'abs (azurite)',
  async () => {
    const endpoint = inject('absEndpoint');
    const name = `contract-${randomBytes(4).toString('hex')}`;
    await createContainer(endpoint, name);
    const client = new AbsReplicaClient({
      accountName: AZURITE_ACCOUNT,
      accountKey: AZURITE_KEY,
      bucket: name,
      path: 'db/replica',
      endpoint,
      listPageSize: 3,
    });
    const keys = async () => {
      const container = new ContainerClient(`${endpoint}/${name}`, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
      const out: string[] = [];
      for await (const b of container.listBlobsFlat({ prefix: 'db/replica/' })) out.push(b.name);
      return out;
    };
    return { client, cleanup: async () => undefined, clockSlackMs: 1500, keys };
  },
  { lease: true },
);
