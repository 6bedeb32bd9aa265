import { Readable } from 'node:stream';
import { compressFrameSync, decompressFrameSync } from 'lz4-napi';
import { describe, expect, it } from 'vitest';
import { decodeLz4Frame, encodeLz4Frame, LZ4_BLOCK_SIZE, LZ4_FRAME_HEADER } from '../../../src/internal/lz4-frame.js';
import { isReplicateError } from '../../../src/errors.js';

async function collectBytes(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

function chunked(buf: Buffer, size: number): AsyncIterable<Uint8Array> {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
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

/** The kind of each data block of a frame (7-byte header, no block checksums). */
function blockKinds(frame: Buffer): ('compressed' | 'stored')[] {
  const kinds: ('compressed' | 'stored')[] = [];
  for (let at = 7, word = frame.readUInt32LE(at); word !== 0; at += 4 + (word & 0x7fffffff), word = frame.readUInt32LE(at)) {
    kinds.push(word >>> 31 ? 'stored' : 'compressed');
  }
  return kinds;
}

const encode = (buf: Buffer, chunk = 65536) => collectBytes(encodeLz4Frame(chunked(buf, chunk)));
const decode = (buf: Buffer, chunk = 65536) => collectBytes(decodeLz4Frame({ label: 'obj' })(chunked(buf, chunk)));

describe('lz4 frame writer', () => {
  it('is done with each input chunk before it pulls the next (a source may reuse one buffer)', async () => {
    const data = sample(2 * LZ4_BLOCK_SIZE + 3 * 1024 * 1024 + 17, 7);
    const size = 1024 * 1024 + 7; // never aligned with a block: every block gathers parts of several chunks
    async function* reusing(): AsyncGenerator<Buffer> {
      const buf = Buffer.alloc(size);
      for (let at = 0; at < data.length; at += size) {
        const n = data.copy(buf, 0, at, at + size);
        yield buf.subarray(0, n);
        buf.fill(0xee); // what a reader reusing its buffer does next
      }
    }
    const frame = await collectBytes(encodeLz4Frame(reusing()));
    expect(decompressFrameSync(frame).equals(data)).toBe(true);
    // A chunk that is a whole block by itself is compressed in place, and the result is the same.
    const whole = await collectBytes(encodeLz4Frame(chunked(data, LZ4_BLOCK_SIZE)));
    expect(whole.equals(frame)).toBe(true);
  });

  it('hands out its output buffer again only with reuseOutput: chunks kept without copying stay intact', async () => {
    const data = sample(3 * LZ4_BLOCK_SIZE + 12_345, 11);
    const reference = await encode(data, 1024 * 1024 + 3);
    // A consumer that queues every chunk it is given (as an upload SDK may): without reuseOutput, each
    // is its own memory, before and after the frame ends and whatever frames are encoded meanwhile.
    const kept: Buffer[] = [];
    for await (const c of encodeLz4Frame(chunked(data, 1024 * 1024 + 3))) kept.push(c);
    await encode(sample(2 * LZ4_BLOCK_SIZE, 5)); // another frame, which may take the spare buffers
    await collectBytes(encodeLz4Frame(chunked(sample(2 * LZ4_BLOCK_SIZE, 6), LZ4_BLOCK_SIZE), { reuseOutput: true }));
    expect(Buffer.concat(kept).equals(reference)).toBe(true);
    // Each chunk is its own memory: no two share a byte (small ones may sit side by side in Node's Buffer pool).
    const sharing = kept.flatMap((a, i) => kept.slice(i + 1).filter((b) => sharesBytes(a, b)));
    expect(sharing).toEqual([]);

    // With reuseOutput, a consumer done with each chunk before the next gets the same bytes.
    for (const size of [LZ4_BLOCK_SIZE, 1024 * 1024 + 3]) {
      expect((await collectBytes(encodeLz4Frame(chunked(data, size), { reuseOutput: true }))).equals(reference)).toBe(true);
    }
  });

  it('frames encoded at the same time with reuseOutput never share a buffer', async () => {
    const a = sample(2 * LZ4_BLOCK_SIZE + 99, 21);
    const b = sample(3 * LZ4_BLOCK_SIZE + 7, 22);
    const ia = encodeLz4Frame(chunked(a, 700_001), { reuseOutput: true });
    const ib = encodeLz4Frame(chunked(b, LZ4_BLOCK_SIZE), { reuseOutput: true });
    const pa: Buffer[] = [];
    const pb: Buffer[] = [];
    // Interleaved pulls; each chunk is copied before its own frame is pulled again.
    for (let ra = await ia.next(), rb = await ib.next(); !ra.done || !rb.done;) {
      if (!ra.done) {
        pa.push(Buffer.from(ra.value));
        ra = await ia.next();
      }
      if (!rb.done) {
        pb.push(Buffer.from(rb.value));
        rb = await ib.next();
      }
    }
    expect(decompressFrameSync(Buffer.concat(pa)).equals(a)).toBe(true);
    expect(decompressFrameSync(Buffer.concat(pb)).equals(b)).toBe(true);
  });

  it("writes Litestream's exact header and a single frame that the reference decoder reads", async () => {
    for (const size of [0, 1, 1000, LZ4_BLOCK_SIZE, LZ4_BLOCK_SIZE + 17, 9_039_872]) {
      const input = sample(size, size);
      const framed = await encode(input, 100_000);
      expect(framed.subarray(0, 7).equals(LZ4_FRAME_HEADER)).toBe(true);
      expect(decompressFrameSync(framed).equals(input)).toBe(true);
    }
  });

  it('splits input into independent 4 MiB blocks', async () => {
    const input = Buffer.alloc(LZ4_BLOCK_SIZE * 2 + 5, 1);
    const framed = await encode(input);
    // header, then the first block's length; it must decode to exactly 4 MiB by itself
    const len = framed.readUInt32LE(7) & 0x7fffffff;
    const second = 7 + 4 + len;
    expect(framed.readUInt32LE(second) & 0x7fffffff).toBeGreaterThan(0);
    expect((await decode(framed)).equals(input)).toBe(true);
  });
});

describe('lz4 frame reader', () => {
  it('reads frames from the reference encoder, in any chunking', async () => {
    const input = sample(5_000_000, 3);
    const framed = compressFrameSync(input, { contentChecksum: true });
    for (const chunk of [7, 4096, 1 << 20]) expect((await decode(framed, chunk)).equals(input), `chunks of ${chunk}`).toBe(true);
  });

  it('reads a frame fed one byte at a time: every field split across chunks, two blocks, compressed and stored', async () => {
    // A compressible 4 MiB block, then an incompressible block that is stored as is: small when framed,
    // so one chunk per byte stays quick.
    const input = Buffer.concat([Buffer.alloc(LZ4_BLOCK_SIZE, 'abc'), sample(3000, 9)]); // sample's first 64 KiB are random
    const framed = compressFrameSync(input, { contentChecksum: true });
    expect(blockKinds(framed)).toEqual(['compressed', 'stored']);
    const parts: Buffer[] = [];
    for await (const c of decodeLz4Frame({ label: 'obj' })(chunked(framed, 1))) parts.push(Buffer.from(c));
    expect(Buffer.concat(parts).equals(input)).toBe(true);
    // Our own frame too, and a flipped bit in the content checksum is still caught at the very last byte.
    const ours = await encode(input);
    expect((await decode(ours, 1)).equals(input)).toBe(true);
    const damaged = Buffer.from(ours);
    damaged[damaged.length - 1] = damaged[damaged.length - 1]! ^ 0x80;
    const err = await decode(damaged, 1).catch((e: unknown) => e);
    expect(isReplicateError(err, 'CORRUPT_OBJECT'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/content checksum mismatch/);
  });

  it('rejects a flipped bit with a content checksum error', async () => {
    const input = sample(200_000, 5);
    const framed = await encode(input);
    // Flip a bit inside a stored (incompressible) region so the block still decodes.
    framed[20] = framed[20]! ^ 0x01;
    const err = await decode(framed).catch((e: unknown) => e);
    expect(isReplicateError(err, 'CORRUPT_OBJECT')).toBe(true);
    expect(String((err as Error).message)).toMatch(/decoding lz4 frame of obj: (content checksum mismatch|block does not decode)/);
  });

  it('rejects truncated, empty, trailing-garbage and bad-magic objects', async () => {
    const framed = await encode(sample(100_000, 2));
    const cases: [Buffer, RegExp][] = [
      [framed.subarray(0, framed.length - 3), /truncated/],
      [framed.subarray(0, 5), /truncated/],
      [Buffer.alloc(0), /empty/],
      [Buffer.concat([framed, framed]), /unexpected data after the lz4 frame/],
      [Buffer.from('not an lz4 frame at all'), /bad magic number/],
    ];
    for (const [bytes, re] of cases) {
      const err = await decode(bytes).catch((e: unknown) => e);
      expect(isReplicateError(err, 'CORRUPT_OBJECT'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(re);
    }
  });

  it('accepts a block-checksum frame and linked blocks (other writers)', async () => {
    const input = sample(300_000, 4);
    const withBlockSums = compressFrameSync(input, { contentChecksum: true, blockChecksums: true });
    expect((await decode(withBlockSums)).equals(input)).toBe(true);
  });

  it('gathers blocks that span chunks in one scratch buffer kept across frames', async () => {
    const a = sample(LZ4_BLOCK_SIZE + 12345, 3);
    const b = sample(300_000, 4);
    const inputScratch: { buffer?: Buffer } = {};
    const decode = async (data: Buffer) =>
      collectBytes(decodeLz4Frame({ inputScratch })(chunked(await collectBytes(encodeLz4Frame(chunked(data, 65536))), 100_000)));
    expect((await decode(a)).equals(a)).toBe(true);
    const kept = inputScratch.buffer;
    expect(kept).toBeDefined();
    expect((await decode(b)).equals(b)).toBe(true);
    expect(inputScratch.buffer).toBe(kept); // the second frame's blocks are smaller: no new buffer
  });

  it('decodes into a ring of reused output buffers for a consumer that copies each chunk', async () => {
    const input = sample(LZ4_BLOCK_SIZE * 3 + 12345, 8);
    const framed = await encode(input, 1 << 20);
    const parts: Buffer[] = [];
    for await (const c of decodeLz4Frame({ label: 'obj', reuseOutput: 2 })(chunked(framed, 300_000))) parts.push(Buffer.from(c));
    expect(Buffer.concat(parts).equals(input)).toBe(true);
  });
});

/** Whether two buffers' bytes overlap in memory. */
function sharesBytes(a: Buffer, b: Buffer): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length;
}
