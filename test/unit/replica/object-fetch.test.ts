/**
 * Reading many objects ahead, in order and within a budget, and resuming one after a dropped connection.
 * (The same code restores from real servers in the integration suites; here the timing and the failures
 * are made exact.)
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ReplicateError } from '../../../src/errors.js';
import { OrderedPrefetch, resumableChunks, type ObjectSource } from '../../../src/replica/object-fetch.js';

const KiB = 1024;

/** An object of `size` bytes (byte i = i % 251 ^ id), in chunks of `chunk`; `failAfter` bytes fail the first `failures` reads. */
function source(
  id: number,
  size: number,
  o: { chunk?: number; failAfter?: number; failures?: number; error?: () => Error; delayMs?: number } = {},
) {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i++) bytes[i] = (i % 251) ^ id;
  const stats = { opens: 0, open: 0, maxOpen: 0, sent: 0 };
  const src: ObjectSource & { bytes: Buffer; stats: typeof stats } = {
    where: `obj-${id}`,
    size,
    bytes,
    stats,
    open: async () => {
      stats.opens++;
      const failing = stats.opens <= (o.failures ?? 0);
      const chunk = o.chunk ?? 16 * KiB;
      async function* body() {
        stats.open++;
        stats.maxOpen = Math.max(stats.maxOpen, stats.open);
        try {
          for (let at = 0; at < size; at += chunk) {
            if (failing && at >= (o.failAfter ?? 0))
              throw o.error?.() ?? Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
            if (o.delayMs) await new Promise((r) => setTimeout(r, o.delayMs));
            stats.sent += Math.min(chunk, size - at);
            yield bytes.subarray(at, at + chunk);
          }
        } finally {
          stats.open--;
        }
      }
      return Readable.from(body(), { highWaterMark: 1 });
    },
  };
  return src;
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

describe('resumableChunks', () => {
  it('resumes after a dropped connection without repeating or losing a byte', async () => {
    const s = source(1, 200 * KiB, { chunk: 7 * KiB, failAfter: 70 * KiB, failures: 2 });
    const retries: number[] = [];
    const got = await collect(resumableChunks(s, { backoffMs: 1, onRetry: (_w, attempt) => retries.push(attempt) }));
    expect(got.equals(s.bytes)).toBe(true);
    expect(retries).toEqual([1, 2]);
    expect(s.stats.opens).toBe(3);
  });

  it('does not retry what another try cannot cure, and gives up after its retries', async () => {
    const missing = source(2, 10 * KiB, { failures: 9, error: () => new ReplicateError('NOT_FOUND', 'gone') });
    await expect(collect(resumableChunks(missing, { backoffMs: 1 }))).rejects.toThrow(/gone/);
    expect(missing.stats.opens).toBe(1);
    const flaky = source(3, 10 * KiB, { failures: 9 });
    await expect(collect(resumableChunks(flaky, { backoffMs: 1, retries: 2 }))).rejects.toThrow(/ECONNRESET/);
    expect(flaky.stats.opens).toBe(3);
  });
});

describe('OrderedPrefetch', () => {
  it('hands over every object in order, reading several at once, within the budget', async () => {
    const sources = Array.from({ length: 40 }, (_, i) => source(i, (i % 5) * 9 * KiB + 1, { chunk: 4 * KiB, delayMs: 1 }));
    let inFlightPeak = 0;
    const p = new OrderedPrefetch(sources, { concurrency: 6, budgetBytes: 64 * KiB });
    let i = 0;
    for await (const { source: s, body } of p.bodies()) {
      expect(s).toBe(sources[i]);
      const got = await collect(body);
      expect(got.equals(sources[i]!.bytes)).toBe(true);
      inFlightPeak = Math.max(
        inFlightPeak,
        sources.reduce((n, x) => n + x.stats.open, 0),
      );
      i++;
    }
    expect(i).toBe(40);
    expect(inFlightPeak).toBeGreaterThan(1);
    expect(inFlightPeak).toBeLessThanOrEqual(6);
  });

  it('holds at most about the budget ahead, and streams an object larger than the budget', async () => {
    const big = source(100, 2048 * KiB, { chunk: 16 * KiB });
    const rest = Array.from({ length: 10 }, (_, i) => source(i, 256 * KiB, { chunk: 16 * KiB }));
    const sources = [source(99, 1 * KiB), big, ...rest];
    const budget = 128 * KiB;
    const p = new OrderedPrefetch(sources, { concurrency: 4, budgetBytes: budget });
    let consumed = 0;
    let maxAhead = 0;
    for await (const { body } of p.bodies()) {
      for await (const c of body) {
        consumed += c.length;
        // Bytes read from the "network" but not yet handed over: twice the budget (ahead, and the
        // object being consumed) plus a couple of chunks per reader.
        const sent = sources.reduce((n, x) => n + x.stats.sent, 0);
        maxAhead = Math.max(maxAhead, sent - consumed);
        await new Promise((r) => setImmediate(r));
      }
    }
    expect(consumed).toBe(sources.reduce((n, x) => n + x.size, 0));
    expect(maxAhead).toBeLessThanOrEqual(2 * budget + 4 * 3 * 16 * KiB);
  });

  it('retries one object’s dropped connection without failing the rest', async () => {
    const sources = Array.from({ length: 12 }, (_, i) =>
      source(i, 50 * KiB, i === 5 ? { chunk: 8 * KiB, failAfter: 20 * KiB, failures: 1 } : {}),
    );
    const p = new OrderedPrefetch(sources, { concurrency: 4, budgetBytes: 1 << 20, backoffMs: 1 });
    const got: Buffer[] = [];
    for await (const { body } of p.bodies()) got.push(await collect(body));
    expect(Buffer.concat(got).equals(Buffer.concat(sources.map((s) => s.bytes)))).toBe(true);
    expect(sources[5]!.stats.opens).toBe(2);
  });

  it('a failure that cannot be cured reaches the consumer at that object, and stopping early closes every read', async () => {
    const sources = Array.from({ length: 8 }, (_, i) =>
      source(i, 40 * KiB, i === 3 ? { failures: 9, error: () => new ReplicateError('NOT_FOUND', 'deleted by retention') } : { delayMs: 2 }),
    );
    const p = new OrderedPrefetch(sources, { concurrency: 4, budgetBytes: 1 << 20 });
    let n = 0;
    await expect(
      (async () => {
        for await (const { body } of p.bodies()) {
          await collect(body);
          n++;
        }
      })(),
    ).rejects.toThrow(/deleted by retention/);
    expect(n).toBe(3);
    expect(sources.reduce((k, s) => k + s.stats.open, 0)).toBe(0);
  });
});
