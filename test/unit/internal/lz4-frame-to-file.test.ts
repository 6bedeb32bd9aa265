/**
 * The worker-thread frame decoder (lz4-frame-to-file.ts) against the streaming one: the same bytes on a
 * snapshot the real Litestream v0.3.13 wrote and on frames of other writers, and the same errors for
 * every kind of damage.
 */
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { spawnSync } from 'node:child_process';
import { compressFrameSync } from 'lz4-napi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeLz4Frame, encodeLz4Frame, LZ4_BLOCK_SIZE } from '../../../src/internal/lz4-frame.js';
import { decodeLz4FrameToFile, prestartDecodeWorker } from '../../../src/internal/lz4-frame-to-file.js';
import { isReplicateError } from '../../../src/errors.js';
import { LitestreamReplicator } from '../../helpers/oracle.js';
import { openSourceDb, textOf } from '../../helpers/source-db.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-lz4-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function chunked(buf: Buffer, size: number): AsyncIterable<Uint8Array> {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

async function streaming(frame: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of decodeLz4Frame({ label: 'obj' })(chunked(frame, 65536))) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

let fileN = 0;
/** Decodes into a new file; returns the file's bytes and what the decoder reported. */
async function toFile(frame: Buffer, chunk = 65536): Promise<{ bytes: Buffer; size: number; head: Buffer }> {
  const path = join(dir, `out-${fileN++}`);
  const fd = openSync(path, 'w+');
  try {
    const { size, head } = await decodeLz4FrameToFile(chunked(frame, chunk), fd, { label: 'obj' });
    return { bytes: readFileSync(path), size, head };
  } finally {
    closeSync(fd);
  }
}

/** The error each decoder throws for `frame` (undefined if it decodes). */
async function errors(frame: Buffer): Promise<[unknown, unknown]> {
  const a = await streaming(frame).then(
    () => undefined,
    (e: unknown) => e,
  );
  const b = await toFile(frame).then(
    () => undefined,
    (e: unknown) => e,
  );
  return [a, b];
}

/** Mixed data: compressible runs and pseudo-random stretches (to force stored blocks). */
function sample(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    if ((i >> 16) % 3 === 0) {
      x = (x * 1103515245 + 12345) >>> 0;
      b[i] = x >>> 24;
    } else b[i] = (i * 7) & 0x3f;
  }
  return b;
}

async function ourFrame(data: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of encodeLz4Frame(chunked(data, 1 << 20))) parts.push(c);
  return Buffer.concat(parts);
}

/** Offsets of each block's header in a frame with a 7-byte header and no block checksums. */
function blockOffsets(frame: Buffer): number[] {
  const at: number[] = [];
  for (let p = 7, w = frame.readUInt32LE(p); w !== 0; p += 4 + (w & 0x7fffffff), w = frame.readUInt32LE(p)) at.push(p);
  return at;
}

let litestreamSnapshot: Buffer;
let sourceBytes: Buffer;

beforeAll(async () => {
  // ~14 MB of varied rows: a snapshot of several 4 MiB blocks, as Litestream writes it.
  const dbPath = join(dir, 'db.sqlite');
  const db = openSourceDb(dbPath);
  const insert = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
  db.transaction(() => {
    for (let i = 0; i < 7000; i++) insert.run(textOf(i, 1000 + (i % 1500)), i);
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  const ls = LitestreamReplicator.start({ dbPath, replicaDir: join(dir, 'replica') });
  try {
    await ls.waitForLog(/msg="snapshot written"/);
  } finally {
    await ls.stop();
  }
  db.close();
  const gens = join(dir, 'replica', 'generations');
  const gen = readdirSync(gens)[0]!;
  litestreamSnapshot = readFileSync(join(gens, gen, 'snapshots', '00000000.snapshot.lz4'));
  sourceBytes = readFileSync(dbPath);
}, 60_000);

describe('lz4 frame decoded into a file on a worker thread', () => {
  it('writes the same bytes as the streaming decoder for a snapshot the real Litestream wrote', async () => {
    expect(blockOffsets(litestreamSnapshot).length).toBeGreaterThanOrEqual(3);
    const expected = await streaming(litestreamSnapshot);
    expect(expected.equals(sourceBytes)).toBe(true);
    for (const chunk of [65536, 1 << 20, 7777]) {
      const { bytes, size, head } = await toFile(litestreamSnapshot, chunk);
      expect(size).toBe(expected.length);
      expect(bytes.equals(expected)).toBe(true);
      expect(head.equals(expected.subarray(0, 100))).toBe(true);
    }
  });

  it('decodes stored (incompressible) blocks, a short last block, and frames of other writers', async () => {
    const data = sample(LZ4_BLOCK_SIZE * 2 + 12345, 5);
    const ours = await ourFrame(data);
    expect((await toFile(ours)).bytes.equals(data)).toBe(true);
    // lz4-napi's frames: 64 KiB linked blocks, with block checksums (decoded on the calling thread).
    const other = compressFrameSync(sample(300_000, 4), { contentChecksum: true, blockChecksums: true });
    expect((await toFile(other)).bytes.equals(await streaming(other))).toBe(true);
  });

  it('rejects each kind of damage with the same CORRUPT_OBJECT error as the streaming decoder', async () => {
    const blocks = blockOffsets(litestreamSnapshot);
    const damaged: Record<string, Buffer> = {};
    // A compressed block that no longer decodes, in the middle of the frame: its length word made short.
    const second = Buffer.from(litestreamSnapshot);
    const word = second.readUInt32LE(blocks[1]);
    expect(word >>> 31).toBe(0);
    const cut = Buffer.alloc(second.length - 100);
    second.copy(cut, 0, 0, blocks[1]! + 4 + (word - 100));
    second.copy(cut, blocks[1]! + 4 + (word - 100), blocks[1]! + 4 + word);
    cut.writeUInt32LE(word - 100, blocks[1]);
    damaged.shortBlock = cut;
    // A flipped bit inside a block's data: either it no longer decodes or the content checksum catches it.
    const flipped = Buffer.from(litestreamSnapshot);
    flipped[blocks[1]! + 5000]! ^= 0x10;
    damaged.flipped = flipped;
    const sum = Buffer.from(litestreamSnapshot);
    sum[sum.length - 1]! ^= 1;
    damaged.contentChecksum = sum;
    damaged.truncated = litestreamSnapshot.subarray(0, blocks[2]! + 1000);
    damaged.trailing = Buffer.concat([litestreamSnapshot, Buffer.from('x')]);
    damaged.empty = Buffer.alloc(0);
    for (const [name, frame] of Object.entries(damaged)) {
      const [a, b] = await errors(frame);
      expect(isReplicateError(a, 'CORRUPT_OBJECT'), `${name}: ${String(a)}`).toBe(true);
      expect(isReplicateError(b, 'CORRUPT_OBJECT'), `${name}: ${String(b)}`).toBe(true);
      expect((b as Error).message, name).toBe((a as Error).message);
    }
    expect(((await errors(damaged.shortBlock))[1] as Error).message).toMatch(/block does not decode/);
  });

  it('rejects a block whose checksum does not match, before decoding it', async () => {
    const data = sample(200_000, 6);
    const frame = compressFrameSync(data, { contentChecksum: true, blockChecksums: true });
    // The first block's checksum follows its data.
    const first = frame.readUInt32LE(7) & 0x7fffffff;
    const bad = Buffer.from(frame);
    bad[7 + 4 + first]! ^= 1;
    const [a, b] = await errors(bad);
    expect((a as Error).message).toMatch(/block checksum mismatch/);
    expect((b as Error).message).toBe((a as Error).message);
  });

  it('gives back every block buffer whole (the input slots went to the worker and came back)', async () => {
    const path = join(dir, `out-${fileN++}`);
    const fd = openSync(path, 'w+');
    try {
      const { buffers } = await decodeLz4FrameToFile(chunked(litestreamSnapshot, 65536), fd, { label: 'obj' });
      expect(buffers).toHaveLength(4);
      // A buffer still with the worker, or detached by the transfer, would be empty.
      for (const b of buffers) expect(b.length).toBe(LZ4_BLOCK_SIZE);
      // Reusable: each can be written and read back.
      for (const [i, b] of buffers.entries()) b.fill(i + 1);
      expect(buffers.map((b) => b[b.length - 1])).toEqual([1, 2, 3, 4]);
    } finally {
      closeSync(fd);
    }
  });

  it('decodes with a worker started ahead, and lets an untaken one go', async () => {
    const release = prestartDecodeWorker();
    expect((await toFile(litestreamSnapshot)).bytes.equals(sourceBytes)).toBe(true);
    await release(); // taken by the decode: nothing to let go
    // Started and let go before any frame: the next decode starts its own.
    await prestartDecodeWorker()();
    expect((await toFile(litestreamSnapshot, 1 << 20)).bytes.equals(sourceBytes)).toBe(true);
    // Started twice: one worker waits; the second starter's release leaves it to the first.
    const first = prestartDecodeWorker();
    await prestartDecodeWorker()();
    expect((await toFile(litestreamSnapshot, 7777)).bytes.equals(sourceBytes)).toBe(true);
    await first();
  });

  it('a worker started ahead and never used does not keep the process alive', () => {
    const module = join(process.cwd(), 'dist', 'src', 'internal', 'lz4-frame-to-file.js');
    const code = `const m = await import(${JSON.stringify(module)}); m.prestartDecodeWorker(); console.log('started');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000 });
    expect(r.error).toBeUndefined();
    expect(r.signal).toBeNull(); // not killed by the timeout: it exited by itself
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('started\n');
  });

  it("passes a failed write's errno code on", async () => {
    const path = join(dir, 'read-only');
    writeFileSync(path, '');
    const fd = openSync(path, 'r');
    try {
      const err = await decodeLz4FrameToFile(chunked(litestreamSnapshot, 65536), fd, { label: 'obj' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as NodeJS.ErrnoException).code).toBe('EBADF');
    } finally {
      closeSync(fd);
    }
  });
});
