import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { collect } from '../../src/client/replica-client.js';
import { describeReplicaClientContract } from './replica-client-contract.js';

describeReplicaClientContract('file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'stn-file-contract-'));
  return { client: new FileReplicaClient({ path: join(dir, 'replica') }), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

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
