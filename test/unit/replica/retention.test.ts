import { describe, expect, it } from 'vitest';
import type { SnapshotInfo, WalSegmentInfo } from '../../../src/client/replica-client.js';
import {
  firstSnapshotDelay,
  isEmptyPlan,
  planRetention,
  retentionCheckPeriod,
  type GenerationObjects,
} from '../../../src/replica/retention.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const HOUR = 3600_000;
const at = (h: number) => new Date(T0 + h * HOUR);

/** snaps: [index, hour]; segs: [index, offset, hour] */
function gen(generation: string, snaps: [number, number][], segs: [number, number, number][]): GenerationObjects {
  const snapshots: SnapshotInfo[] = snaps.map(([index, h]) => ({ generation, index, size: 100, createdAt: at(h) }));
  const segments: WalSegmentInfo[] = segs.map(([index, offset, h]) => ({ generation, index, offset, size: 10, createdAt: at(h) }));
  return { generation, snapshots, segments };
}

const A = 'aaaaaaaaaaaaaaaa';
const B = 'bbbbbbbbbbbbbbbb';
const C = 'cccccccccccccccc';
const DAY = 24 * HOUR;

describe('planRetention', () => {
  it('keeps every snapshot inside the window and everything from the oldest of them on', () => {
    // Snapshots at index 0 (h0), 2 (h10), 4 (h30); now = h40, retention 24 h: window starts at h16.
    const g = gen(
      A,
      [
        [0, 0],
        [2, 10],
        [4, 30],
      ],
      [
        [0, 0, 1],
        [0, 4152, 2],
        [1, 0, 5],
        [2, 0, 11],
        [3, 0, 20],
        [3, 8272, 21],
        [4, 0, 31],
        [5, 0, 35],
      ],
    );
    const p = planRetention({ now: at(40).getTime(), retentionMs: DAY, currentGeneration: A, generations: [g] });
    expect(p.needsSnapshot).toBe(false);
    expect(p.kept).toEqual([{ generation: A, minIndex: 4 }]);
    expect(p.deleteSnapshots).toEqual([
      { generation: A, index: 0 },
      { generation: A, index: 2 },
    ]);
    // Later offsets first, then each index's offset 0: an interrupted run never strands a later offset.
    expect(p.deleteSegments).toEqual([
      { generation: A, index: 0, offset: 4152 },
      { generation: A, index: 3, offset: 8272 },
      { generation: A, index: 0, offset: 0 },
      { generation: A, index: 1, offset: 0 },
      { generation: A, index: 2, offset: 0 },
      { generation: A, index: 3, offset: 0 },
    ]);
    expect(p.deleteGenerations).toEqual([]);
  });

  it('treats a snapshot exactly at the window start as inside it', () => {
    const g = gen(
      A,
      [
        [0, 0],
        [1, 16],
      ],
      [
        [0, 0, 0],
        [1, 0, 16],
      ],
    );
    const p = planRetention({ now: at(40).getTime(), retentionMs: DAY, currentGeneration: A, generations: [g] });
    expect(p.kept).toEqual([{ generation: A, minIndex: 1 }]);
    expect(p.deleteSnapshots).toEqual([{ generation: A, index: 0 }]);
  });

  it('asks for a snapshot when none is inside the window, and deletes nothing before it exists', () => {
    const g = gen(
      A,
      [
        [0, 0],
        [3, 5],
      ],
      [
        [0, 0, 0],
        [3, 0, 6],
        [4, 0, 7],
      ],
    );
    const p = planRetention({ now: at(100).getTime(), retentionMs: DAY, currentGeneration: A, generations: [g] });
    expect(p.needsSnapshot).toBe(true);
    expect(isEmptyPlan(p)).toBe(true);

    // Then the new snapshot (index 4, its timestamp whatever the store says) is the only one retained.
    const after = gen(
      A,
      [
        [0, 0],
        [3, 5],
        [4, 0],
      ],
      [
        [0, 0, 0],
        [3, 0, 6],
        [4, 0, 7],
      ],
    );
    const p2 = planRetention({
      now: at(100).getTime(),
      retentionMs: DAY,
      currentGeneration: A,
      generations: [after],
      forceRetain: { generation: A, index: 4 },
    });
    expect(p2.needsSnapshot).toBe(false);
    expect(p2.kept).toEqual([{ generation: A, minIndex: 4 }]);
    expect(p2.deleteSnapshots.map((s) => s.index)).toEqual([0, 3]);
    expect(p2.deleteSegments.map((s) => s.index)).toEqual([0, 3]);
  });

  it('deletes whole old generations without a retained snapshot, keeps those with one', () => {
    const old = gen(
      A,
      [[0, 0]],
      [
        [0, 0, 0],
        [1, 0, 2],
      ],
    ); // nothing in the window: goes entirely
    const mid = gen(
      B,
      [
        [0, 10],
        [2, 30],
      ],
      [
        [0, 0, 10],
        [1, 0, 20],
        [2, 0, 30],
      ],
    ); // snapshot 2 at h30 retained
    const cur = gen(
      C,
      [[0, 35]],
      [
        [0, 0, 35],
        [1, 0, 39],
      ],
    );
    const p = planRetention({ now: at(40).getTime(), retentionMs: DAY, currentGeneration: C, generations: [old, mid, cur] });
    expect(p.deleteGenerations).toEqual([A]);
    expect(p.kept).toEqual([
      { generation: B, minIndex: 2 },
      { generation: C, minIndex: 0 },
    ]);
    expect(p.deleteSnapshots).toEqual([{ generation: B, index: 0 }]);
    expect(p.deleteSegments).toEqual([
      { generation: B, index: 0, offset: 0 },
      { generation: B, index: 1, offset: 0 },
    ]);
  });

  it('never deletes the current generation, even when only another generation has a snapshot in the window', () => {
    // Clock skew: the current generation's only snapshots look old, an older generation's looks new.
    const other = gen(A, [[0, 39]], [[0, 0, 39]]);
    const cur = gen(
      B,
      [
        [0, 1],
        [5, 2],
      ],
      [
        [0, 0, 1],
        [5, 0, 2],
        [6, 0, 3],
      ],
    );
    const p = planRetention({ now: at(40).getTime(), retentionMs: DAY, currentGeneration: B, generations: [other, cur] });
    expect(p.deleteGenerations).toEqual([]);
    // It stays restorable from its newest snapshot.
    expect(p.kept).toContainEqual({ generation: B, minIndex: 5 });
    expect(p.deleteSnapshots).toEqual([{ generation: B, index: 0 }]);
    expect(p.deleteSegments).toEqual([{ generation: B, index: 0, offset: 0 }]);
  });

  it('leaves a current generation that has no snapshot yet alone', () => {
    const old = gen(A, [[0, 30]], [[0, 0, 30]]);
    const cur = gen(B, [], [[0, 0, 39]]);
    const p = planRetention({ now: at(40).getTime(), retentionMs: DAY, currentGeneration: B, generations: [old, cur] });
    expect(p.deleteGenerations).toEqual([]);
    expect(p.deleteSegments).toEqual([]);
    expect(p.kept).toEqual([{ generation: A, minIndex: 0 }]);
  });

  it('with no current generation known, any generation without a retained snapshot goes', () => {
    const a = gen(A, [[0, 0]], [[0, 0, 0]]);
    const b = gen(B, [[0, 30]], [[0, 0, 30]]);
    const p = planRetention({ now: at(40).getTime(), retentionMs: DAY, generations: [a, b] });
    expect(p.deleteGenerations).toEqual([A]);
  });

  it('keeps snapshots above the oldest retained one even when their timestamps are older (overwrites)', () => {
    // Index 2 was re-written (new timestamp h30); index 3's snapshot is older by timestamp (h12).
    const g = gen(
      A,
      [
        [1, 5],
        [2, 30],
        [3, 12],
      ],
      [
        [1, 0, 5],
        [2, 0, 9],
        [3, 0, 12],
      ],
    );
    const p = planRetention({ now: at(40).getTime(), retentionMs: DAY, currentGeneration: A, generations: [g] });
    expect(p.kept).toEqual([{ generation: A, minIndex: 2 }]);
    expect(p.deleteSnapshots).toEqual([{ generation: A, index: 1 }]);
  });
});

describe('snapshot schedule', () => {
  it('waits a full interval when there is no snapshot yet', () => {
    expect(firstSnapshotDelay(HOUR, T0)).toBe(HOUR);
  });
  it('continues the rhythm of the latest snapshot', () => {
    expect(firstSnapshotDelay(HOUR, T0 + 20 * 60_000, T0)).toBe(40 * 60_000);
  });
  it('is due at once when overdue', () => {
    expect(firstSnapshotDelay(HOUR, T0 + 5 * HOUR, T0)).toBe(0);
  });
  it('never waits longer than one interval (a snapshot stamped in the future)', () => {
    expect(firstSnapshotDelay(HOUR, T0, T0 + 10 * HOUR)).toBe(HOUR);
  });
  it('checks retention at least once per window', () => {
    expect(retentionCheckPeriod(DAY, HOUR)).toBe(HOUR);
    expect(retentionCheckPeriod(10_000, HOUR)).toBe(10_000);
  });
});
