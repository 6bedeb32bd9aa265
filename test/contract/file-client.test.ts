import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { collect } from '../../src/client/replica-client.js';
import { KEPT_RECORDS } from '../../src/client/file-lease.js';
import { ReplicaLease } from '../../src/lease/replica-lease.js';
import { describeReplicaClientContract } from './replica-client-contract.js';

describeReplicaClientContract(
  'file',
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stn-file-contract-'));
    return { client: new FileReplicaClient({ path: join(dir, 'replica') }), cleanup: () => rm(dir, { recursive: true, force: true }) };
  },
  { lease: true },
);

describe('file backend specifics', () => {
  it('skips names Litestream would skip (uppercase hex, temp files, stray files)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stn-file-'));
    try {
      const gen = join(dir, 'generations', '0123456789abcdef');
      await mkdir(join(gen, 'snapshots'), { recursive: true });
      await mkdir(join(gen, 'wal'), { recursive: true });
      await mkdir(join(dir, 'generations', '0123456789ABCDEF'), { recursive: true });
      await writeFile(join(dir, 'generations', 'fedcba9876543210'), 'a file, not a directory');
      await writeFile(join(gen, 'snapshots', '00000001.snapshot.lz4'), 'x');
      await writeFile(join(gen, 'snapshots', '00000002.snapshot.lz4.tmp'), 'x');
      await writeFile(join(gen, 'snapshots', '0000000A.snapshot.lz4'), 'x');
      await writeFile(join(gen, 'wal', '00000001_00000000.wal.lz4'), 'x');
      await writeFile(join(gen, 'wal', '00000001_00000020.wal.lz4.1234.tmp'), 'x');
      await writeFile(join(gen, 'wal', '00000001.wal.lz4'), 'x');
      const c = new FileReplicaClient({ path: dir });
      expect(await c.generations()).toEqual(['0123456789abcdef']);
      expect((await collect(c.snapshots('0123456789abcdef'))).map((s) => s.index)).toEqual([1]);
      expect((await collect(c.walSegments('0123456789abcdef'))).map((s) => [s.index, s.offset])).toEqual([[1, 0]]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('writes through a temp file that never stays behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stn-file-'));
    try {
      const c = new FileReplicaClient({ path: dir });
      await c.writeWalSegment({ generation: '0123456789abcdef', index: 0, offset: 0 }, [Buffer.from('abc')]);
      expect(await readdir(join(dir, 'generations', '0123456789abcdef', 'wal'))).toEqual(['00000000_00000000.wal.lz4']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('file backend lease records', () => {
  it('a writer that was paused while others moved on cannot win by re-creating a removed record', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stn-file-lease-'));
    try {
      const c = new FileReplicaClient({ path: dir });
      let v = (await c.writeLease(Buffer.from('v1'), undefined))!;
      const paused = v; // a holder that read version 1, then stopped (SIGSTOP, a frozen VM)
      for (let i = 0; i < KEPT_RECORDS + 5; i++) v = (await c.writeLease(Buffer.from(`later ${i}`), v))!;
      // Record 2 was removed as old; the paused writer creates it again, and must see it lost.
      expect(await readdir(join(dir, 'lease'))).not.toContain('0000000000000002.json');
      expect(await c.writeLease(Buffer.from('stale'), paused)).toBeUndefined();
      expect((await c.readLease())?.body.toString()).toBe(`later ${KEPT_RECORDS + 4}`);
      // Old records do not pile up, and no temp file stays behind.
      const names = await readdir(join(dir, 'lease'));
      expect(names.length).toBeLessThanOrEqual(KEPT_RECORDS + 2);
      expect(names.filter((n) => n.endsWith('.tmp'))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a holder whose store fails stops writing at its deadline, and a waiter takes over only after', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stn-file-lease-'));
    try {
      const c = new FileReplicaClient({ path: dir });
      const a = new ReplicaLease({ client: c, replica: 'r', ttlMs: 900, identity: { instance: 'aaaa' } });
      await a.acquire();
      // A real failure of the lease directory: it becomes a file, so every record write fails (ENOTDIR).
      const leaseDir = join(dir, 'lease');
      await rename(leaseDir, join(dir, 'lease.moved'));
      await writeFile(leaseDir, 'not a directory');
      const lost = await new Promise<{ code: string }>((resolve) => a.once('lost', resolve));
      expect(lost.code).toBe('LEASE_LOST');
      expect(() => a.assertHeld()).toThrow(expect.objectContaining({ code: 'LEASE_LOST' }));
      // The store comes back with the last record the holder wrote: a waiter still has to see it
      // unchanged for a whole TTL before taking over.
      await rm(leaseDir);
      await rename(join(dir, 'lease.moved'), leaseDir);
      const b = new ReplicaLease({ client: c, replica: 'r', ttlMs: 900, identity: { instance: 'bbbb' }, pollMs: 50 });
      expect((await b.tryAcquire())?.record.holder?.instance).toBe('aaaa');
      await b.acquire(AbortSignal.timeout(30_000));
      expect((await b.read())?.record.holder?.instance).toBe('bbbb');
      await b.release();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('file backend lease at start-up', () => {
  it('a replica path that runs through a file fails the acquisition at once instead of waiting', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stn-file-lease-'));
    try {
      await writeFile(join(dir, 'backups'), 'not a directory (an unmounted volume, a typo)');
      const c = new FileReplicaClient({ path: join(dir, 'backups', 'app') });
      const lease = new ReplicaLease({ client: c, replica: 'file', ttlMs: 2000 });
      await expect(lease.acquire()).rejects.toThrow(/taking the lease at .*backups\/app: .*ENOTDIR/);
      expect(lease.state).toBe('idle');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
