/**
 * fixedChunks re-cuts a stream into parts of exactly `size` bytes (the last one shorter) whatever the
 * input's own chunking, and the parts it yields are copies the consumer may keep.
 */
import { describe, expect, it } from 'vitest';
import { fixedChunks } from '../../../src/internal/fixed-chunks.js';

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const b of it) out.push(b);
  return out;
}

/** Deterministic bytes and chunk sizes (xorshift32), so a failure replays. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function bytes(n: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r() & 0xff;
  return b;
}

/** `data` cut at random places, empty chunks included. */
function randomChunks(data: Buffer, seed: number, maxChunk: number): Buffer[] {
  const r = rng(seed);
  const out: Buffer[] = [];
  for (let at = 0; at < data.length;) {
    const n = r() % (maxChunk + 1); // 0 is a valid (empty) chunk
    out.push(data.subarray(at, at + n));
    at += n;
  }
  return out;
}

function expectCut(parts: Buffer[], data: Buffer, size: number): void {
  expect(Buffer.concat(parts).equals(data)).toBe(true);
  expect(parts.length).toBe(Math.ceil(data.length / size));
  parts.forEach((p, i) => {
    if (i < parts.length - 1) expect(p.length).toBe(size);
    else expect(p.length).toBe(data.length - size * (parts.length - 1));
  });
}

describe('fixedChunks', () => {
  it('yields parts of exactly `size` and a shorter last one, whatever the input chunking', async () => {
    for (const [seed, length, size, maxChunk] of [
      [1, 10_000, 1024, 3000],
      [2, 10_000, 1024, 10],
      [3, 4096, 1024, 700],
      [4, 1, 1024, 5],
      [5, 5000, 1, 64],
      [6, 65_537, 8192, 20_000],
    ] as const) {
      const data = bytes(length, seed);
      const parts = await collect(fixedChunks(randomChunks(data, seed * 7, maxChunk), size));
      expectCut(parts, data, size);
    }
  });

  it('a length that is a multiple of size ends with a full part, not an empty one', async () => {
    const data = bytes(3 * 100, 9);
    const parts = await collect(fixedChunks([data.subarray(0, 150), data.subarray(150)], 100));
    expect(parts.map((p) => p.length)).toEqual([100, 100, 100]);
    expectCut(parts, data, 100);
  });

  it('nothing in, nothing out', async () => {
    expect(await collect(fixedChunks([], 10))).toEqual([]);
    expect(await collect(fixedChunks([Buffer.alloc(0), Buffer.alloc(0)], 10))).toEqual([]);
  });

  it('takes async iterables and plain Uint8Arrays, reading a view at its own offset', async () => {
    const backing = new Uint8Array(64).map((_, i) => i);
    const view = new Uint8Array(backing.buffer, 10, 25); // bytes 10..34 of the backing buffer
    async function* source() {
      yield view;
      yield new Uint8Array([200, 201]);
    }
    const parts = await collect(fixedChunks(source(), 10));
    expect(parts.map((p) => p.length)).toEqual([10, 10, 7]);
    expect([...Buffer.concat(parts)]).toEqual([...Array.from({ length: 25 }, (_, i) => i + 10), 200, 201]);
  });

  it('the parts are copies: a producer that reuses its buffer does not change parts already yielded', async () => {
    const shared = Buffer.alloc(6);
    async function* reusing() {
      for (const fill of [1, 2, 3, 4]) {
        shared.fill(fill);
        yield shared;
      }
    }
    // Collected first, compared after the producer has overwritten its buffer three more times.
    const parts = await collect(fixedChunks(reusing(), 4));
    expect(parts.map((p) => [...p])).toEqual([
      [1, 1, 1, 1],
      [1, 1, 2, 2],
      [2, 2, 2, 2],
      [3, 3, 3, 3],
      [3, 3, 4, 4],
      [4, 4, 4, 4],
    ]);
  });

  it('reads the input lazily: a part is yielded before the rest of the input is read', async () => {
    let read = 0;
    async function* counting() {
      for (let i = 0; i < 10; i++) {
        read++;
        yield Buffer.alloc(100, i);
      }
    }
    const it = fixedChunks(counting(), 250);
    const first = await it.next();
    expect(first.value).toHaveLength(250);
    expect(read).toBe(3); // 300 bytes read for the first 250: at most one piece plus one input chunk held
    await it.return(undefined);
  });
});
