import { describe, expect, it } from 'vitest';
import { DEFAULT_CHECKPOINT_POLICY } from '../../../src/config/defaults.js';
import { CheckpointThrottle, checkpointMode } from '../../../src/shipper/checkpoint-policy.js';
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
      checkpointMode(low, {
        pageSize: page,
        walSize: size(shadowPages),
        shadowSize: size(shadowPages),
        idleMs,
        ownSize: ownPages === 0 ? 0 : size(ownPages),
      });
    expect(x(1, 1)).toBeUndefined();
    expect(x(2, 2, 3_600_000)).toBeUndefined();
    expect(x(2, 1)).toBe('PASSIVE');
    expect(x(1, 0)).toBe('PASSIVE');
  });

  it('TRUNCATE looks at the WAL cycle, RESTART and PASSIVE at the shadow WAL (the part not yet checkpointed)', () => {
    // A cycle grown past the fail-safe truncates even when little of it is left to copy...
    expect(mode(500_000, 1)).toBe('TRUNCATE');
    // ...and a large shadow in a small cycle is judged by the shadow alone.
    expect(mode(1, 10_000)).toBe('RESTART');
    expect(mode(1, 1_000)).toBe('PASSIVE');
    expect(mode(20_000, 999)).toBeUndefined();
  });

  it("the thresholds are the policy's, counted in frames of the database's page size", () => {
    const p = { minCheckpointPageCount: 10, maxCheckpointPageCount: 20, truncatePageCount: 30, checkpointIntervalMs: 5_000 };
    const at = (pageSize: number, walPages: number, shadowPages: number, idleMs = 0) =>
      checkpointMode(p, { pageSize, walSize: calcWalSize(pageSize, walPages), shadowSize: calcWalSize(pageSize, shadowPages), idleMs });
    for (const pageSize of [512, 4096, 65_536]) {
      expect(at(pageSize, 9, 9)).toBeUndefined();
      expect(at(pageSize, 10, 10)).toBe('PASSIVE');
      expect(at(pageSize, 20, 20)).toBe('RESTART');
      expect(at(pageSize, 30, 20)).toBe('TRUNCATE');
      expect(at(pageSize, 2, 2, 5_001)).toBe('PASSIVE');
    }
    // One byte short of a threshold is below it.
    expect(checkpointMode(p, { pageSize: 4096, walSize: 0, shadowSize: calcWalSize(4096, 10) - 1, idleMs: 0 })).toBeUndefined();
  });

  it("the defaults are Litestream v0.3.13's", () => {
    expect(DEFAULT_CHECKPOINT_POLICY).toEqual({
      minCheckpointPageCount: 1000,
      maxCheckpointPageCount: 10_000,
      truncatePageCount: 500_000,
      checkpointIntervalMs: 60_000,
    });
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

  it('a busy attempt never shortens a longer wait already set, and never waits longer than the first delay', () => {
    const t = new CheckpointThrottle();
    t.record(0, false);
    t.record(1000, false); // next allowed at 3000
    t.recordBusy(1500);
    expect(t.allowed(2999)).toBe(false);
    expect(t.allowed(3000)).toBe(true);
    const quick = new CheckpointThrottle(100, 400);
    quick.recordBusy(0);
    expect(quick.allowed(99)).toBe(false);
    expect(quick.allowed(100)).toBe(true);
  });

  it('its delays are configurable: first, then doubling up to the maximum', () => {
    const t = new CheckpointThrottle(100, 300);
    const waits: number[] = [];
    let now = 0;
    for (let i = 0; i < 4; i++) {
      t.record(now, false);
      let next = now;
      while (!t.allowed(next)) next += 1;
      waits.push(next - now);
      now = next;
    }
    expect(waits).toEqual([100, 200, 300, 300]);
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
