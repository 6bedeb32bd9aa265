import { describe, expect, it } from 'vitest';
import type { SnapshotInfo, WalSegmentInfo } from '../../../src/client/replica-client.js';
import { isReplicateError } from '../../../src/errors.js';
import { chooseGeneration, planRestore, type GenerationListing } from '../../../src/replica/restore-plan.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000);

function gen(generation: string, snaps: [number, number][], segs: [number, number, number][], replica = 'file'): GenerationListing {
  const snapshots: SnapshotInfo[] = snaps.map(([index, t]) => ({ generation, index, size: 100, createdAt: at(t) }));
  const segments: WalSegmentInfo[] = segs.map(([index, offset, t]) => ({ generation, index, offset, size: 10, createdAt: at(t) }));
  return { replica, generation, snapshots, segments };
}

const A = 'aaaaaaaaaaaaaaaa';
const B = 'bbbbbbbbbbbbbbbb';

function expectCode(fn: () => unknown, code: string, re?: RegExp) {
  try {
    fn();
  } catch (e) {
    expect(isReplicateError(e), String(e)).toBe(true);
    expect((e as { code: string }).code).toBe(code);
    if (re) expect((e as Error).message).toMatch(re);
    return;
  }
  throw new Error('expected an error');
}

describe('chooseGeneration', () => {
  const a = gen(
    A,
    [[0, 0]],
    [
      [0, 0, 1],
      [0, 4152, 50],
    ],
  );
  const b = gen(
    B,
    [[0, 100]],
    [
      [0, 0, 101],
      [1, 0, 200],
    ],
  );

  it('picks the greatest updatedAt without a timestamp', () => {
    expect(chooseGeneration([a, b])?.generation).toBe(B);
    expect(chooseGeneration([b, a])?.generation).toBe(B);
  });

  it('honours -generation', () => {
    expect(chooseGeneration([a, b], { generation: A })?.generation).toBe(A);
    expect(chooseGeneration([a, b], { generation: 'cccccccccccccccc' })).toBeUndefined();
  });

  it('with a timestamp, picks the generation whose state at T is newest, including one that ended before T', () => {
    expect(chooseGeneration([a, b], { timestamp: at(30) })?.generation).toBe(A);
    expect(chooseGeneration([a, b], { timestamp: at(75) })?.generation).toBe(A); // between generations (Litestream: no match)
    expect(chooseGeneration([a, b], { timestamp: at(150) })?.generation).toBe(B);
    expect(chooseGeneration([a, b], { timestamp: at(10_000) })?.generation).toBe(B); // after the last upload
    expect(chooseGeneration([a, b], { timestamp: at(-1) })).toBeUndefined();
  });

  it('skips generations without snapshots', () => {
    const noSnap = gen('cccccccccccccccc', [], [[0, 0, 500]]);
    expect(chooseGeneration([a, noSnap])?.generation).toBe(A);
  });
});

describe('planRestore', () => {
  const g = gen(
    A,
    [
      [0, 0],
      [2, 60],
    ],
    [
      [0, 0, 1],
      [0, 4152, 10],
      [1, 0, 20],
      [1, 4152, 30],
      [2, 0, 61],
      [2, 4152, 70],
      [3, 0, 80],
    ],
  );

  it('restores the latest snapshot and every index after it', () => {
    const p = planRestore(g);
    expect(p.snapshot.index).toBe(2);
    expect(p.indexes.map((i) => [i.index, i.segments.map((s) => s.offset)])).toEqual([
      [2, [0, 4152]],
      [3, [0]],
    ]);
    expect(p.bytesTotal).toBe(100 + 30);
  });

  it('cuts segments at the first one created after the timestamp', () => {
    const p = planRestore(g, { timestamp: at(25) });
    expect(p.snapshot.index).toBe(0);
    expect(p.indexes.map((i) => [i.index, i.segments.length])).toEqual([
      [0, 2],
      [1, 1],
    ]);
  });

  it('restores to an index (snapshot at or below it, segments up to it)', () => {
    const p = planRestore(g, { index: 1 });
    expect(p.snapshot.index).toBe(0);
    expect(p.indexes.map((i) => i.index)).toEqual([0, 1]);
  });

  it('rejects an index beyond the generation instead of silently restoring the latest', () => {
    expectCode(() => planRestore(g, { index: 9 }), 'INVALID_ARGUMENT', /ends at index 00000003/);
  });

  it('rejects index and timestamp together', () => {
    expectCode(() => planRestore(g, { index: 1, timestamp: at(5) }), 'INVALID_ARGUMENT', /index & timestamp/);
  });

  it('names a missing WAL index, or stops before it with stopAtGap', () => {
    const holey = gen(
      A,
      [[0, 0]],
      [
        [0, 0, 1],
        [2, 0, 3],
      ],
    );
    expectCode(() => planRestore(holey), 'MISSING_WAL_INDEX', /missing WAL index: aaaaaaaaaaaaaaaa\/00000001/);
    const p = planRestore(holey, { stopAtGap: true });
    expect(p.indexes.map((i) => i.index)).toEqual([0]);
    expect(p.truncatedReason).toMatch(/00000001/);
  });

  it('names a missing initial segment', () => {
    const noStart = gen(
      A,
      [[0, 0]],
      [
        [0, 0, 1],
        [1, 4152, 3],
      ],
    );
    expectCode(() => planRestore(noStart), 'MISSING_INITIAL_SEGMENT', /index=00000001 offset=4152/);
  });

  it('ignores broken indexes below the snapshot (they are inside it)', () => {
    const oldHoles = gen(
      A,
      [[5, 0]],
      [
        [3, 4152, 1],
        [5, 0, 2],
      ],
    );
    expect(planRestore(oldHoles).indexes.map((i) => i.index)).toEqual([5]);
  });

  it('restores a snapshot alone when no segment reaches its index (no panic on an inverted range)', () => {
    const inverted = gen(
      A,
      [[7, 10]],
      [
        [0, 0, 1],
        [1, 0, 2],
      ],
    );
    const p = planRestore(inverted);
    expect(p.snapshot.index).toBe(7);
    expect(p.indexes).toEqual([]);
  });

  it('says when no snapshot is old enough', () => {
    expectCode(() => planRestore(g, { timestamp: at(-5) }), 'TIMESTAMP_OUT_OF_RANGE', /no snapshot at or before.*restorable:/);
    const late = gen(A, [[4, 0]], [[4, 0, 1]]);
    expectCode(() => planRestore(late, { index: 2 }), 'NO_BACKUPS', /no snapshot at or before index 00000002/);
  });
});

describe('planRestore to an exact position (index and offset)', () => {
  const g = gen(
    A,
    [[0, 0]],
    [
      [0, 0, 1],
      [0, 4152, 2],
      [1, 0, 3],
      [1, 8272, 4],
      [1, 16512, 5],
      [2, 0, 6],
    ],
  );

  it('keeps the segments that start before the offset and marks where to stop', () => {
    const p = planRestore(g, { index: 1, offset: 12000 });
    expect(p.indexes.map((i) => i.index)).toEqual([0, 1]);
    expect(p.indexes[0]!.endOffset).toBeUndefined();
    expect(p.indexes[1]!.segments.map((s) => s.offset)).toEqual([0, 8272]);
    expect(p.indexes[1]!.endOffset).toBe(12000);
  });

  it('an offset without an index is refused', () => {
    expectCode(() => planRestore(g, { offset: 10 }), 'INVALID_ARGUMENT', /needs an index/);
  });
});

describe('planRestore to an exact position: snapshot choice', () => {
  it('prefers a snapshot below the index (one of the same index may hold pages past the offset)', () => {
    const g = gen(
      A,
      [
        [0, 0],
        [1, 3],
      ],
      [
        [0, 0, 1],
        [1, 0, 2],
        [1, 8272, 4],
      ],
    );
    expect(planRestore(g, { index: 1, offset: 8272 }).snapshot.index).toBe(0);
    expect(planRestore(g, { index: 1 }).snapshot.index).toBe(1);
    const only = gen(A, [[1, 3]], [[1, 0, 2]]);
    expect(planRestore(only, { index: 1, offset: 100 }).snapshot.index).toBe(1);
  });
});
