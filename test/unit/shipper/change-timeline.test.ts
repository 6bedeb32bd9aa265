/**
 * ChangeTimeline: the copy time of the oldest change past a replica's position (what lag is measured
 * from), across generations, with trimming by the slowest replica and merging when the ring is full.
 */
import { describe, expect, it } from 'vitest';
import { ChangeTimeline } from '../../../src/shipper/change-timeline.js';

const pos = (generation: string, index: number, offset: number) => ({ generation, index, offset });

describe('ChangeTimeline', () => {
  it('gives the time of the first mark past a position, none at or past the last', () => {
    const t = new ChangeTimeline();
    t.record(pos('g1', 0, 4152), 100);
    t.record(pos('g1', 0, 8272), 200);
    t.record(pos('g1', 1, 4152), 300);
    expect(t.firstAfter(pos('g1', 0, 0))).toBe(100);
    expect(t.firstAfter(pos('g1', 0, 4152))).toBe(200);
    expect(t.firstAfter(pos('g1', 0, 9000))).toBe(300);
    expect(t.firstAfter(pos('g1', 1, 4152))).toBeUndefined();
    // Unknown position or generation: before every mark.
    expect(t.firstAfter(undefined)).toBe(100);
    expect(t.firstAfter(pos('other', 9, 9))).toBe(100);
  });

  it('orders generations as they were seen, whatever their names', () => {
    const t = new ChangeTimeline();
    t.record(pos('ffff', 3, 100), 10);
    t.record(pos('0000', 0, 4152), 20);
    expect(t.firstAfter(pos('ffff', 3, 100))).toBe(20);
    expect(t.firstAfter(pos('ffff', 2, 0))).toBe(10);
  });

  it('ignores a repeated position', () => {
    const t = new ChangeTimeline();
    t.record(pos('g', 0, 100), 1);
    t.record(pos('g', 0, 100), 2);
    expect(t.length).toBe(1);
    expect(t.firstAfter(pos('g', 0, 0))).toBe(1);
  });

  it('drops what the slowest replica is past, and nothing while one is unknown', () => {
    const t = new ChangeTimeline();
    for (let i = 1; i <= 5; i++) t.record(pos('g', 0, i * 100), i);
    t.trimToSlowest([pos('g', 0, 300), undefined]);
    expect(t.length).toBe(5);
    t.trimToSlowest([pos('g', 0, 500), pos('g', 0, 300)]);
    expect(t.length).toBe(2);
    expect(t.firstAfter(pos('g', 0, 300))).toBe(4);
    t.trimToSlowest([pos('g', 0, 500)]);
    expect(t.length).toBe(0);
    expect(t.firstAfter(pos('g', 0, 500))).toBeUndefined();
  });

  it('when full, merges neighbours keeping the earlier time: never younger than the truth', () => {
    const t = new ChangeTimeline(8);
    for (let i = 1; i <= 20; i++) t.record(pos('g', 0, i * 100), i);
    expect(t.length).toBeLessThanOrEqual(8);
    // The oldest change past the start keeps its exact time; others may only look older.
    expect(t.firstAfter(pos('g', 0, 0))).toBe(1);
    for (let i = 1; i < 20; i++) {
      const at = t.firstAfter(pos('g', 0, i * 100))!;
      expect(at).toBeLessThanOrEqual(i + 1);
    }
    expect(t.firstAfter(pos('g', 0, 2000))).toBeUndefined();
  });
});
