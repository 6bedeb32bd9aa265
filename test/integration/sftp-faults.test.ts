/**
 * The sftp backend when the connection misbehaves, with a TCP proxy between the client and a real sshd:
 * a connection dropped while idle is replaced without the caller noticing; one dropped mid-upload fails
 * that upload and leaves no temp file; a server that stops answering fails the request after the
 * request timeout instead of hanging (before the handshake, mid-request, mid-download), while a slow
 * link whose answers keep coming does not; and an app
 * that writes through an outage is replicated with no gap once the server answers again.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect } from '../../src/client/replica-client.js';
import { SftpReplicaClient, type SftpReplicaClientOptions } from '../../src/client/sftp-client.js';
import { expectRestoresTo, replicateThroughOutage } from '../helpers/cloud-oracle.js';
import { contentDigest } from '../helpers/source-db.js';
import { startSftpServer, type SftpServer } from '../servers/sftp-server.js';
import { startTcpProxy, type TcpFaultMode, type TcpProxy } from '../servers/tcp-proxy.js';

const GEN = '0123456789abcdef';
const dir = mkdtempSync(join(tmpdir(), 'stn-sftp-faults-'));
let server: SftpServer;
const proxies: TcpProxy[] = [];
const clients: SftpReplicaClient[] = [];

beforeAll(async () => {
  server = await startSftpServer();
});
afterAll(async () => {
  for (const c of clients) c.close();
  for (const p of proxies) await p.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A client that reaches the server through a new proxy (the host key given: the proxy's port is not in known_hosts). */
async function throughProxy(
  o: Partial<SftpReplicaClientOptions> = {},
): Promise<{ client: SftpReplicaClient; proxy: TcpProxy; remote: string }> {
  const proxy = await startTcpProxy(server.host, server.port);
  proxies.push(proxy);
  const remote = server.newDir('faults');
  const client = new SftpReplicaClient({
    host: proxy.address,
    user: server.user,
    keyPath: server.keyPath,
    hostKey: server.hostKey,
    path: remote,
    requestTimeoutMs: 2000,
    connectTimeoutMs: 2000,
    ...o,
  });
  clients.push(client);
  return { client, proxy, remote };
}

const body = (text: string) => [Buffer.from(text)];

describe('sftp connection faults', () => {
  it('replaces a connection dropped while idle without failing the next request', async () => {
    const { client, proxy } = await throughProxy();
    await client.writeSnapshot(GEN, 1, body('first'));
    expect(proxy.connections).toBe(1);
    proxy.mode = 'drop';
    proxy.mode = 'pass';
    expect((await collect(client.snapshots(GEN))).map((s) => s.index)).toEqual([1]);
    await client.writeWalSegment({ generation: GEN, index: 1, offset: 0 }, body('second'));
    expect(proxy.connections).toBe(2);
    expect(proxy.faults).toBe(1);
  });

  it("reconnects after the server's session processes were killed (SIGKILL)", async () => {
    const remote = server.newDir('killed');
    const client = new SftpReplicaClient({
      host: server.address,
      user: server.user,
      keyPath: server.keyPath,
      knownHostsPath: server.knownHostsPath,
      path: remote,
    });
    clients.push(client);
    await client.writeSnapshot(GEN, 1, body('before'));
    expect(server.killSessions()).toBeGreaterThan(0);
    await client.writeWalSegment({ generation: GEN, index: 1, offset: 0 }, body('after'));
    expect((await collect(client.walSegments(GEN))).map((w) => w.index)).toEqual([1]);
  });

  it('fails an upload whose connection drops mid-way, leaves no temp file, and the next upload works', async () => {
    const { client, proxy, remote } = await throughProxy();
    await client.generations(); // connected
    async function* dropsMidway() {
      yield Buffer.alloc(256 * 1024, 1);
      proxy.mode = 'drop'; // every open connection is closed...
      proxy.mode = 'pass'; // ...and new ones pass again
      await new Promise((r) => setTimeout(r, 50));
      yield Buffer.alloc(256 * 1024, 2);
    }
    await expect(client.writeSnapshot(GEN, 2, dropsMidway())).rejects.toThrow(
      /\[sftp\] writing sftp:\/\/.*00000002\.snapshot\.lz4: .*connection to stn-sftp@127\.0\.0\.1:\d+ was lost/,
    );
    // The temp file was removed over a new connection (the replica is a directory on this machine).
    expect(readdirSync(join(remote, 'generations', GEN, 'snapshots'))).toEqual([]);
    await client.writeSnapshot(GEN, 2, body('whole'));
    expect(readdirSync(join(remote, 'generations', GEN, 'snapshots'))).toEqual(['00000002.snapshot.lz4']);
  });

  it('gives up on a server that stops answering after the request timeout, then connects again', async () => {
    const { client, proxy } = await throughProxy({ requestTimeoutMs: 500 });
    await client.writeSnapshot(GEN, 3, body('before the stall'));
    proxy.mode = 'stall';
    await expect(client.generations()).rejects.toMatchObject({
      code: 'IO',
      message: expect.stringMatching(/no answer from stn-sftp@127\.0\.0\.1:\d+ for \d+ ms; the connection was dropped/),
    });
    proxy.mode = 'pass';
    expect(await client.generations()).toEqual([GEN]);
  });

  it('does not give up on a slow link while answers keep coming, though each write waits longer than the timeout', async () => {
    const { client, proxy, remote } = await throughProxy({ requestTimeoutMs: 1000 });
    await client.generations(); // connected at full speed
    // 256 KiB/s up: with 1 MiB of writes in flight the last ones wait about four seconds for their
    // answers, while an answer comes every quarter of a second.
    proxy.uplinkBytesPerSec = 256 << 10;
    const info = await client.writeSnapshot(GEN, 5, [Buffer.alloc(1 << 20, 5)]);
    expect(info.size).toBe(1 << 20);
    expect(readdirSync(join(remote, 'generations', GEN, 'snapshots'))).toEqual(['00000005.snapshot.lz4']);
    expect(proxy.connections).toBe(1);
  });

  it('gives up on a server that accepts connections but never completes the handshake: UNREACHABLE', async () => {
    const { client, proxy } = await throughProxy({ connectTimeoutMs: 1000 });
    proxy.mode = 'stall';
    await expect(client.generations()).rejects.toMatchObject({
      code: 'UNREACHABLE',
      message: expect.stringMatching(/no SSH session within 1000 ms \(the server did not complete the SSH handshake and login\)/),
    });
  });

  it('fails a download that stalls mid-way instead of hanging', async () => {
    const { client, proxy } = await throughProxy({ requestTimeoutMs: 1000 });
    await client.writeSnapshot(GEN, 4, [Buffer.alloc(8 << 20, 7)]);
    const reader = await client.snapshotReader(GEN, 4);
    const it = reader[Symbol.asyncIterator]();
    expect(((await it.next()).value as Buffer).length).toBeGreaterThan(0);
    proxy.mode = 'stall';
    const drain = async () => {
      for (;;) if ((await it.next()).done) return;
    };
    await expect(drain()).rejects.toThrow(/\[sftp\] reading sftp:\/\/.*00000004\.snapshot\.lz4: .*no answer from .* for \d+ ms/);
  });

  it.each<TcpFaultMode>(['drop', 'stall'])(
    'replicates an app that writes through a %s of every connection, with no gap, restorable by Litestream',
    async (mode) => {
      const { client, proxy, remote } = await throughProxy();
      const dbPath = join(dir, `outage-${mode}.db`);
      const { app, errors } = await replicateThroughOutage({
        client,
        dbPath,
        proxy,
        mode,
        outageWrites: 25,
        afterWrites: 5,
        attempts: 60,
        failingSync: /not uploaded to: sftp \(sftp:\/\//,
      });
      expect(errors.length).toBeGreaterThan(0);
      const config = join(dir, `outage-${mode}.yml`);
      writeFileSync(
        config,
        `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: sftp\n        host: ${server.address}\n        user: ${server.user}\n        key-path: ${server.keyPath}\n        path: ${remote}\n`,
      );
      await expectRestoresTo('litestream', config, dbPath, join(dir, `outage-${mode}-restored.db`), contentDigest(app));
      app.close();
    },
    120_000,
  );
});
