/**
 * The sftp backend against a real OpenSSH server (sshd started by the test on 127.0.0.1): the shared
 * contract, lease included, with key and with password logins, and what is particular to SFTP.
 */
import { afterAll, beforeAll } from 'vitest';
import { SftpReplicaClient } from '../../src/client/sftp-client.js';
import { startSftpServer, type SftpServer } from '../servers/sftp-server.js';
import { describeReplicaClientContract } from './replica-client-contract.js';

let server: SftpServer;
beforeAll(async () => {
  server = await startSftpServer();
});
afterAll(async () => {
  await server?.stop();
});

// SFTP v3 file times are whole seconds.
const clockSlackMs = 1500;

describeReplicaClientContract('sftp (OpenSSH, key login, known_hosts)', async () => {
  const client = new SftpReplicaClient({ host: server.address, user: server.user, keyPath: server.keyPath, knownHostsPath: server.knownHostsPath, path: `${server.newDir()}/db/replica` });
  return { client, cleanup: async () => client.close(), clockSlackMs };
}, { lease: true });

describeReplicaClientContract('sftp (OpenSSH, password login, host-key)', async () => {
  const client = new SftpReplicaClient({ host: server.address, user: server.user, password: server.password, hostKey: server.hostKey, path: server.newDir() });
  return { client, cleanup: async () => client.close(), clockSlackMs };
}, { lease: true });
