/**
 * A file replica's snapshot read with recycled buffers (what a restore asks for) must give the same bytes
 * to the LZ4 decoder as a plain read: the decoder holds up to a 4 MiB block's worth of chunks, and the
 * ring must never hand out a buffer it still holds. Incompressible blocks are stored raw, so each block
 * spans several 1 MiB reads at odd offsets.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../../src/client/file-client.js';
import { decodeLz4Frame, encodeLz4Frame } from '../../../src/internal/lz4-frame.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-recycled-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('FileReplicaClient: recycled read buffers', () => {
  it('decode the same bytes as a plain read, for a snapshot larger than the ring', async () => {
    const client = new FileReplicaClient({ path: dir });
    // 26 MiB: runs of random (stored raw) and repeated (compressed) data, so blocks end at odd offsets.
    const parts: Buffer[] = [];
    for (let i = 0; i < 13; i++) parts.push(randomBytes(1_500_000 + i * 7919), Buffer.alloc(600_000 + i * 104_729, i));
    const data = Buffer.concat(parts);
    const gen = '0123456789abcdef';
    await client.writeSnapshot(
      gen,
      1,
      encodeLz4Frame(
        (async function* () {
          yield data;
        })(),
      ),
    );

    const digest = async (recycle: boolean) => {
      const h = createHash('sha256');
      let n = 0;
      const reader = await client.snapshotReader(gen, 1, { recycleReadBuffers: recycle });
      for await (const chunk of decodeLz4Frame({ reuseOutput: 3 })(reader)) {
        h.update(chunk);
        n += chunk.length;
      }
      return { n, sha: h.digest('hex') };
    };
    const want = { n: data.length, sha: createHash('sha256').update(data).digest('hex') };
    expect(await digest(false)).toEqual(want);
    expect(await digest(true)).toEqual(want);
  });
});

describe('FileReplicaClient: read buffers from the caller (a restore’s WAL segments)', () => {
  it('gives a segment’s exact bytes in the caller’s pieces, for sizes from tiny to more than one read call', async () => {
    const { ReadBufferPool, PIECE_BYTES } = await import('../../../src/internal/read-buffer-pool.js');
    const client = new FileReplicaClient({ path: dir });
    const gen = 'fedcba9876543210';
    const pool = new ReadBufferPool(64 * PIECE_BYTES);
    for (const [i, size] of [0, 1, 100, 20_000, PIECE_BYTES, PIECE_BYTES + 1, 700_000, 1024 * 1024, 2_500_001].entries()) {
      const data = randomBytes(size);
      const pos = { generation: gen, index: 1, offset: i * 4096 };
      await client.writeWalSegment(
        pos,
        (async function* () {
          yield data;
        })(),
      );
      const lease = pool.lease();
      const chunks: Buffer[] = [];
      for await (const chunk of await client.walSegmentReader(pos, { readBuffers: lease })) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).equals(data), `size ${size}`).toBe(true);
      // Every chunk of a pooled size lives in a piece the lease took (none was copied elsewhere).
      for (const c of chunks)
        if (c.length >= PIECE_BYTES / 4) expect(c.buffer.byteLength, `size ${size}`).toBeGreaterThanOrEqual(PIECE_BYTES);
      lease.release();
    }
    expect(pool.freeBytes).toBeGreaterThan(0);
  });
});
