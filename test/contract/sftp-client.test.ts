/**
 * The sftp backend against a real OpenSSH server (sshd started by the test on 127.0.0.1): the shared
 * contract, lease included, with key and with password logins, and what is particular to SFTP.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect } from '../../src/client/replica-client.js';
import { SftpReplicaClient, type SftpReplicaClientOptions } from '../../src/client/sftp-client.js';
import { startReplacingSftpServer } from '../servers/replacing-sftp-server.js';
import { SFTP_USER, startSftpServer, type SftpServer } from '../servers/sftp-server.js';
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

/** Every file under a replica's directory (the server is local), as paths relative to it. */
function filesUnder(root: string): () => Promise<string[]> {
  return async () =>
    readdirSync(root, { recursive: true, withFileTypes: true })
      .filter((d) => d.isFile())
      .map((d) => join(d.parentPath, d.name).slice(root.length + 1));
}

describeReplicaClientContract(
  'sftp (OpenSSH, key login, known_hosts)',
  async () => {
    const root = `${server.newDir()}/db/replica`;
    const client = new SftpReplicaClient({
      host: server.address,
      user: server.user,
      keyPath: server.keyPath,
      knownHostsPath: server.knownHostsPath,
      path: root,
    });
    return { client, cleanup: async () => client.close(), clockSlackMs, keys: filesUnder(root) };
  },
  { lease: true },
);

describeReplicaClientContract(
  'sftp (OpenSSH, password login, host-key)',
  async () => {
    const root = server.newDir();
    const client = new SftpReplicaClient({
      host: server.address,
      user: server.user,
      password: server.password,
      hostKey: server.hostKey,
      path: root,
    });
    return { client, cleanup: async () => client.close(), clockSlackMs, keys: filesUnder(root) };
  },
  { lease: true },
);

describe('sftp backend specifics', () => {
  const GEN = '0123456789abcdef';
  const client = (path: string, o: Partial<SftpReplicaClientOptions> = {}) =>
    new SftpReplicaClient({ host: server.address, user: server.user, keyPath: server.keyPath, hostKey: server.hostKey, path, ...o });

  it('shows an object only once it is whole: mid-upload it is neither listed nor readable; no temp file stays', async () => {
    const root = server.newDir();
    const writer = client(root);
    const reader = client(root);
    let release!: () => void;
    const paused = new Promise<void>((r) => (release = r));
    let midway!: () => void;
    const reachedMidway = new Promise<void>((r) => (midway = r));
    async function* slowBody() {
      yield Buffer.alloc(1 << 20, 1);
      midway();
      await paused;
      yield Buffer.alloc(1 << 20, 2);
    }
    const upload = writer.writeSnapshot(GEN, 7, slowBody());
    await reachedMidway;
    expect(await collect(reader.snapshots(GEN))).toEqual([]);
    await expect(reader.snapshotReader(GEN, 7)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    release();
    expect((await upload).size).toBe(2 << 20);
    expect((await collect(reader.snapshots(GEN))).map((s) => [s.index, s.size])).toEqual([[7, 2 << 20]]);
    expect(readdirSync(join(root, 'generations', GEN, 'snapshots'))).toEqual(['00000007.snapshot.lz4']);
    writer.close();
    reader.close();
  });

  it('reads back objects of every size around the read size (64 KiB) byte for byte', async () => {
    const c = client(server.newDir());
    try {
      for (const [i, size] of [0, 1, 65535, 65536, 65537, 3 * 65536, 200_000].entries()) {
        const bytes = Buffer.alloc(size);
        for (let j = 0; j < size; j++) bytes[j] = (j * 31 + i) & 0xff;
        await c.writeWalSegment({ generation: GEN, index: i, offset: 0 }, [bytes]);
        const parts: Buffer[] = [];
        for await (const p of await c.walSegmentReader({ generation: GEN, index: i, offset: 0 })) parts.push(p as Buffer);
        expect(Buffer.concat(parts).equals(bytes), `size ${size}`).toBe(true);
      }
    } finally {
      c.close();
    }
  });

  it('creates files 0600 and directories 0700 (they hold the database)', async () => {
    const root = server.newDir();
    const c = client(`${root}/a/b`);
    await c.writeWalSegment({ generation: GEN, index: 0, offset: 0 }, [Buffer.from('w')]);
    c.close();
    expect(statSync(join(root, 'a')).mode & 0o777).toBe(0o700);
    expect(statSync(join(root, 'a', 'b', 'generations', GEN, 'wal')).mode & 0o777).toBe(0o700);
    expect(statSync(join(root, 'a', 'b', 'generations', GEN, 'wal', '00000000_00000000.wal.lz4')).mode & 0o777).toBe(0o600);
  });

  it('takes a relative path below the login directory, as Litestream does', async () => {
    const name = `stn-test-${randomBytes(4).toString('hex')}`;
    const c = client(`${name}/db`);
    try {
      expect(c.location).toMatch(new RegExp(`^sftp://stn-sftp@127\\.0\\.0\\.1:\\d+/~/${name}/db$`));
      await c.writeSnapshot(GEN, 1, [Buffer.from('s')]);
      expect(readdirSync(join(homeOf(SFTP_USER), name, 'db', 'generations'))).toEqual([GEN]);
    } finally {
      c.close();
      rmSync(join(homeOf(SFTP_USER), name), { recursive: true, force: true });
    }
  });

  it('one lease version per race across separate connections (separate sftp-server processes)', async () => {
    const root = server.newDir();
    const clients = Array.from({ length: 6 }, () => client(root));
    try {
      const v1 = (await clients[0]!.writeLease(Buffer.from('base'), undefined))!;
      for (let round = 0; round < 5; round++) {
        const expected = (await clients[0]!.readLease())!.version;
        const results = await Promise.all(clients.map((c, i) => c.writeLease(Buffer.from(`round ${round} writer ${i}`), expected)));
        const winners = results.flatMap((v, i) => (v === undefined ? [] : [i]));
        expect(winners).toHaveLength(1);
        expect((await clients[1]!.readLease())?.body.toString()).toBe(`round ${round} writer ${winners[0]}`);
      }
      expect(v1).toBe('1');
      // Records and nothing else: the exclusive-rename probe and the temp files are gone.
      expect(readdirSync(join(root, 'lease')).every((n) => /^[0-9a-f]{16}\.json$/.test(n))).toBe(true);
    } finally {
      for (const c of clients) c.close();
    }
  });
});

function homeOf(user: string): string {
  return readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`))!
    .split(':')[5]!;
}

describe('sftp on a server whose plain rename replaces (not OpenSSH)', () => {
  it('has no lease there (LEASE_UNSUPPORTED from the probe, no lease record written); uploads still end whole there (its rename replaces; no posix-rename)', async () => {
    const other = await startReplacingSftpServer();
    const root = mkdtempSync(join(tmpdir(), 'stn-sftp-replacing-'));
    const c = new SftpReplicaClient({ host: other.address, user: 'anyone', password: 'any', hostKey: other.hostKey, path: root });
    try {
      await expect(c.writeLease(Buffer.from('lease'), undefined)).rejects.toMatchObject({
        code: 'LEASE_UNSUPPORTED',
        message: expect.stringMatching(
          /the server replaces an existing file on a plain rename \(SSH_FXP_RENAME\), so it has no atomic create-if-absent and the replica no lease; set lease: false/,
        ),
      });
      expect(await c.readLease()).toBeUndefined();
      expect(readdirSync(join(root, 'lease'))).toEqual([]);
      // Without posix-rename@openssh.com an upload over an existing object still ends whole.
      await c.writeSnapshot('0123456789abcdef', 1, [Buffer.from('first version')]);
      await c.writeSnapshot('0123456789abcdef', 1, [Buffer.from('second')]);
      const back = await c.snapshotReader('0123456789abcdef', 1);
      const parts: Buffer[] = [];
      for await (const p of back) parts.push(p as Buffer);
      expect(Buffer.concat(parts).toString()).toBe('second');
      expect(readdirSync(join(root, 'generations', '0123456789abcdef', 'snapshots'))).toEqual(['00000001.snapshot.lz4']);
    } finally {
      c.close();
      await other.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
