/**
 * The stall guard gives up on a request after `idleMs` without progress, however long the request has
 * run in all. Time here is vitest's fake clock (only the timers the guard uses), so nothing waits.
 */
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { guardBody, retryStalled, StallGuard, StalledError } from '../../../src/client/stall-guard.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** An operation that never answers: it fails only when the guard's signal aborts it. */
const hang = (guard: StallGuard) =>
  new Promise<never>((_, reject) => guard.signal.addEventListener('abort', () => reject(guard.signal.reason as Error), { once: true }));

describe('StallGuard', () => {
  it('aborts after idleMs without progress, and says it stalled', () => {
    const g = new StallGuard(1000);
    vi.advanceTimersByTime(999);
    expect(g.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(g.signal.aborted).toBe(true);
    expect(g.stalled).toBe(true);
    expect((g.signal.reason as Error).message).toBe('no progress for 1000 ms');
  });

  it('each touch() starts the idle time again: a long operation that keeps moving is never abandoned', () => {
    const g = new StallGuard(1000);
    for (let i = 0; i < 20; i++) {
      vi.advanceTimersByTime(900);
      g.touch();
    }
    expect(g.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1000);
    expect(g.stalled).toBe(true);
  });

  it('done() stops watching', () => {
    const g = new StallGuard(1000);
    g.done();
    vi.advanceTimersByTime(10_000);
    expect(g.signal.aborted).toBe(false);
    expect(g.stalled).toBe(false);
  });

  it("the caller's abort passes through with the caller's reason, and is not a stall", () => {
    const outer = new AbortController();
    const g = new StallGuard(1000, outer.signal);
    outer.abort(new Error('shutting down'));
    expect(g.signal.aborted).toBe(true);
    expect((g.signal.reason as Error).message).toBe('shutting down');
    expect(g.stalled).toBe(false);

    const already = new AbortController();
    already.abort(new Error('before it began'));
    const h = new StallGuard(1000, already.signal);
    expect(h.signal.aborted).toBe(true);
    expect((h.signal.reason as Error).message).toBe('before it began');
    h.done();
  });

  it("after done(), the caller's later abort no longer reaches the finished guard", () => {
    const outer = new AbortController();
    const g = new StallGuard(1000, outer.signal);
    g.done();
    outer.abort(new Error('later'));
    expect(g.signal.aborted).toBe(false);
  });
});

describe('retryStalled', () => {
  it('tries a stalled operation again, each try under a fresh guard', async () => {
    const signals: AbortSignal[] = [];
    const result = retryStalled(1000, 3, undefined, async (guard) => {
      signals.push(guard.signal);
      if (signals.length < 3) return hang(guard);
      return 'answered';
    });
    await vi.advanceTimersByTimeAsync(2000);
    await expect(result).resolves.toBe('answered');
    expect(signals).toHaveLength(3);
    expect(new Set(signals).size).toBe(3);
    expect(signals.map((s) => s.aborted)).toEqual([true, true, false]);
  });

  it('fails with StalledError (naming the tries, the last stall as its cause) when every try stalls', async () => {
    let calls = 0;
    const result = retryStalled(500, 2, undefined, (guard) => {
      calls++;
      return hang(guard);
    });
    const failed = expect(result).rejects.toSatisfy((e: unknown) => {
      expect(e).toBeInstanceOf(StalledError);
      expect((e as Error).message).toMatch(/^no progress for 500 ms \(2 tries\)/);
      expect(((e as Error).cause as Error).message).toBe('no progress for 500 ms');
      return true;
    });
    await vi.advanceTimersByTimeAsync(1000);
    await failed;
    expect(calls).toBe(2);
  });

  it('says "1 try" when allowed only one', async () => {
    const result = retryStalled(500, 1, undefined, hang);
    const failed = expect(result).rejects.toThrow('no progress for 500 ms (1 try)');
    await vi.advanceTimersByTimeAsync(500);
    await failed;
  });

  it('passes any other failure through at once, untouched and not retried', async () => {
    const boom = new Error('403 Forbidden');
    let calls = 0;
    await expect(
      retryStalled(1000, 5, undefined, async () => {
        calls++;
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(calls).toBe(1);
  });

  it("does not retry after the caller's own abort", async () => {
    const outer = new AbortController();
    let calls = 0;
    const result = retryStalled(1000, 5, outer.signal, (guard) => {
      calls++;
      return hang(guard);
    });
    const failed = expect(result).rejects.toThrow('caller gave up');
    outer.abort(new Error('caller gave up'));
    await failed;
    expect(calls).toBe(1);
  });
});

describe('guardBody', () => {
  const wrap = (e: unknown) => new Error('download stalled', { cause: e });

  it('passes the bytes through unchanged while they keep coming', async () => {
    const body = new PassThrough();
    const out = guardBody(body, 1000, undefined, wrap);
    const got: Buffer[] = [];
    out.on('data', (d: Buffer) => got.push(d));
    const ended = new Promise((r) => out.on('end', r));
    for (const part of ['abc', 'def', 'ghi']) {
      body.write(part);
      await vi.advanceTimersByTimeAsync(900); // under idleMs between chunks, 2.7 s in all
    }
    body.end();
    await ended;
    expect(Buffer.concat(got).toString()).toBe('abcdefghi');
  });

  it('fails the stream with onStall(StalledError) when no bytes arrive for idleMs', async () => {
    const body = new PassThrough();
    const out = guardBody(body, 1000, undefined, wrap);
    const got: Buffer[] = [];
    out.on('data', (d: Buffer) => got.push(d));
    const failed = new Promise<Error>((r) => out.on('error', r));
    body.write('first');
    await vi.advanceTimersByTimeAsync(999);
    expect(out.destroyed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    const err = await failed;
    expect(err.message).toBe('download stalled');
    expect(err.cause).toBeInstanceOf(StalledError);
    expect(Buffer.concat(got).toString()).toBe('first');
  });

  it("fails the stream with the caller's reason when the caller aborts", async () => {
    const outer = new AbortController();
    const out = guardBody(new PassThrough(), 1000, outer.signal, wrap);
    const failed = new Promise<Error>((r) => out.on('error', r));
    outer.abort(new Error('closing'));
    const err = await failed;
    expect(err.message).toBe('download stalled');
    expect((err.cause as Error).message).toBe('closing');
  });
});
