import { describe, expect, it } from 'vitest';
import { CheckpointThrottle, DEFAULT_CHECKPOINT_POLICY, checkpointMode } from '../../../src/shipper/checkpoint-policy.js';
import { calcWalSize } from '../../../src/sqlite/wal-format.js';

const page = 4096;
const size = (pages: number) => calcWalSize(page, pages);
const mode = (walPages: number, shadowPages: number, idleMs = 0, policy = DEFAULT_CHECKPOINT_POLICY) =>
  checkpointMode(policy, { pageSize: page, walSize: size(walPages), shadowSize: size(shadowPages), idleMs });

describe('checkpointMode (Litestream v0.3.13 thresholds)', () => {
  it('TRUNCATE at 500,000 pages of WAL cycle, RESTART at max-checkpoint-page-count, PASSIVE at min', () => {
    expect(mode(500_000, 500_000)).toBe('TRUNCATE');
    expect(mode(499_999, 10_000)).toBe('RESTART');
    expect(mode(9_999, 9_999)).toBe('PASSIVE');
    expect(mode(1_000, 1_000)).toBe('PASSIVE');
    expect(mode(999, 999)).toBeUndefined();
  });

  it('time-based: only past checkpoint-interval and with more than one frame (our own seq frame is not a reason)', () => {
    expect(mode(2, 2, 60_001)).toBe('PASSIVE');
    expect(mode(2, 2, 60_000)).toBeUndefined();
    expect(mode(1, 1, 3_600_000)).toBeUndefined();
    expect(mode(2, 2, 3_600_000, { ...DEFAULT_CHECKPOINT_POLICY, checkpointIntervalMs: 0 })).toBeUndefined();
  });

  it('a cycle holding only our own restart write is never checkpointed, whatever the thresholds', () => {
    const low = { ...DEFAULT_CHECKPOINT_POLICY, minCheckpointPageCount: 1 };
    const x = (shadowPages: number, ownPages: number, idleMs = 0) =>
      checkpointMode(low, { pageSize: page, walSize: size(shadowPages), shadowSize: size(shadowPages), idleMs, ownSize: ownPages === 0 ? 0 : size(ownPages) });
    expect(x(1, 1)).toBeUndefined();
    expect(x(2, 2, 3_600_000)).toBeUndefined();
    expect(x(2, 1)).toBe('PASSIVE');
    expect(x(1, 0)).toBe('PASSIVE');
  });

  it('0 switches RESTART and TRUNCATE off', () => {
    const off = { ...DEFAULT_CHECKPOINT_POLICY, maxCheckpointPageCount: 0, truncatePageCount: 0 };
    expect(mode(600_000, 600_000, 0, off)).toBe('PASSIVE');
  });
});

describe('CheckpointThrottle', () => {
  it('an attempt that could not restart the WAL waits 1 s, then 2, 4, 8, 16, 16 s', () => {
    const t = new CheckpointThrottle();
    let now = 0;
    const gaps: number[] = [];
    for (let i = 0; i < 6; i++) {
      t.record(now, false);
      let next = now;
      while (!t.allowed(next)) next += 1;
      gaps.push(next - now);
      now = next;
    }
    expect(gaps).toEqual([1000, 2000, 4000, 8000, 16_000, 16_000]);
  });

  it('a restart resets it: the next attempt may come at once', () => {
    const t = new CheckpointThrottle();
    t.record(0, false);
    t.record(1000, false);
    expect(t.allowed(1500)).toBe(false);
    t.record(1500, true);
    expect(t.allowed(1500)).toBe(true);
    t.record(1600, false);
    expect(t.allowed(2599)).toBe(false);
    expect(t.allowed(2600)).toBe(true);
  });

  it('a busy attempt (the application held the write lock) retries soon, without growing the backoff', () => {
    const t = new CheckpointThrottle();
    t.recordBusy(0);
    expect(t.allowed(249)).toBe(false);
    expect(t.allowed(250)).toBe(true);
    t.record(250, false);
    expect(t.allowed(1249)).toBe(false);
    expect(t.allowed(1250)).toBe(true);
  });
});
