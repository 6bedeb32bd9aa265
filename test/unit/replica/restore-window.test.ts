/**
 * Restorable time ranges, out-of-window timestamps and the dry-run summary of a plan: pure functions
 * over listings.
 */
import { describe, expect, it } from 'vitest';
import type { SnapshotInfo, WalSegmentInfo } from '../../../src/client/replica-client.js';
import { isReplicateError, type ReplicateError } from '../../../src/errors.js';
import {
  chooseGeneration,
  formatRestorableRanges,
  planRestore,
  restorableRange,
  restorableRanges,
  restoreTarget,
  summarizePlan,
  timestampOutOfRange,
  type GenerationListing,
} from '../../../src/replica/restore-plan.js';
import { formatRestorePreview } from '../../../src/cli/commands/restore.js';
import type { RestorePreview } from '../../../src/replica/restore.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();

/** snapshots: [index, time, size]; segments: [index, offset, time, size]. */
function gen(
  generation: string,
  snaps: [number, number, number][],
  segs: [number, number, number, number][],
  replica = 'file',
): GenerationListing {
  const snapshots: SnapshotInfo[] = snaps.map(([index, t, size]) => ({ generation, index, size, createdAt: at(t) }));
  const segments: WalSegmentInfo[] = segs.map(([index, offset, t, size]) => ({ generation, index, offset, size, createdAt: at(t) }));
  return { replica, generation, snapshots, segments };
}

const A = 'aaaaaaaaaaaaaaaa';
const B = 'bbbbbbbbbbbbbbbb';
const C = 'cccccccccccccccc';

function thrown(fn: () => unknown): ReplicateError {
  try {
    fn();
  } catch (e) {
    expect(isReplicateError(e), String(e)).toBe(true);
    return e as ReplicateError;
  }
  throw new Error('expected an error');
}

// A: retention kept only the snapshot of index 2 (t=100); its segments go on to t=180.
const a = gen(
  A,
  [[2, 100, 5000]],
  [
    [1, 0, 90, 7],
    [2, 0, 101, 11],
    [2, 4152, 150, 13],
    [3, 0, 180, 17],
  ],
);
// B: two snapshots, the later one at a higher index; segments until t=400.
const b = gen(
  B,
  [
    [0, 200, 3000],
    [4, 300, 3500],
  ],
  [
    [0, 0, 201, 20],
    [3, 0, 250, 30],
    [4, 0, 301, 40],
    [4, 4152, 400, 50],
  ],
);
// C: segments but no snapshot: nothing to restore from.
const c = gen(C, [], [[0, 0, 500, 60]]);

describe('restorableRange', () => {
  it('spans from the earliest snapshot to the newest object, not from the earliest object', () => {
    expect(restorableRange(a)).toEqual({
      replica: 'file',
      generation: A,
      first: at(100),
      last: at(180),
      snapshots: 1,
      segments: 4,
      bytes: 5000 + 7 + 11 + 13 + 17,
    });
    expect(restorableRange(b)).toMatchObject({ first: at(200), last: at(400), snapshots: 2, segments: 4 });
  });

  it('has no times for a generation without a snapshot, or without anything', () => {
    expect(restorableRange(c)).toEqual({ replica: 'file', generation: C, snapshots: 0, segments: 1, bytes: 60 });
    expect(restorableRange(gen(C, [], []))).toEqual({ replica: 'file', generation: C, snapshots: 0, segments: 0, bytes: 0 });
  });

  it('formats every generation as "<gen> <first> .. <last>", naming replicas only when there are several', () => {
    expect(formatRestorableRanges(restorableRanges([a, b, c]))).toBe(
      `${A} ${iso(100)} .. ${iso(180)}; ${B} ${iso(200)} .. ${iso(400)}; ${C} (no snapshot)`,
    );
    const onS3 = gen(B, [[0, 200, 1]], [], 's3');
    expect(formatRestorableRanges(restorableRanges([a, onS3]))).toBe(
      `${A} on replica file ${iso(100)} .. ${iso(180)}; ${B} on replica s3 ${iso(200)} .. ${iso(200)}`,
    );
    expect(formatRestorableRanges([])).toBe('nothing');
  });
});

describe('timestampOutOfRange', () => {
  it('is an error only before the earliest snapshot of every generation', () => {
    const err = timestampOutOfRange([a, b, c], at(99), 'file (/backups/db)');
    expect(err?.code).toBe('TIMESTAMP_OUT_OF_RANGE');
    expect(err?.message).toBe(
      `no matching backups found at or before ${iso(99)} in file (/backups/db): the timestamp is before the earliest restorable point ${iso(100)}; ` +
        `restorable: ${A} ${iso(100)} .. ${iso(180)}; ${B} ${iso(200)} .. ${iso(400)}; ${C} (no snapshot)`,
    );
    expect(err?.details.earliest).toEqual(at(100));
    expect((err?.details.ranges as unknown[]).length).toBe(3);
    // A segment older than the first snapshot (index 1 at t=90) does not make t=95 restorable.
    expect(timestampOutOfRange([a], at(95), 'x')?.code).toBe('TIMESTAMP_OUT_OF_RANGE');
  });

  it('accepts the earliest point itself, times between generations and times after the last object', () => {
    for (const t of [100, 190, 250, 10_000]) expect(timestampOutOfRange([a, b, c], at(t), 'x')).toBeUndefined();
  });

  it('agrees with chooseGeneration: out of range exactly when no generation is chosen', () => {
    for (let t = 80; t <= 420; t += 5) {
      const chosen = chooseGeneration([a, b, c], { timestamp: at(t) });
      expect(timestampOutOfRange([a, b, c], at(t), 'x') === undefined, `t=${t}`).toBe(chosen !== undefined);
    }
  });

  it('is not the error for a replica with no snapshot at all', () => {
    expect(timestampOutOfRange([c], at(0), 'x')).toBeUndefined();
    expect(timestampOutOfRange([], at(0), 'x')).toBeUndefined();
  });
});

describe('planRestore with an out-of-window timestamp', () => {
  it('throws TIMESTAMP_OUT_OF_RANGE with the generation range', () => {
    const err = thrown(() => planRestore(b, { timestamp: at(150) }));
    expect(err.code).toBe('TIMESTAMP_OUT_OF_RANGE');
    expect(err.message).toContain(`restorable: ${B} ${iso(200)} .. ${iso(400)}`);
  });

  it('a generation without snapshots is still NO_BACKUPS', () => {
    expect(thrown(() => planRestore(c, { timestamp: at(600) })).code).toBe('NO_BACKUPS');
    expect(thrown(() => planRestore(c)).code).toBe('NO_BACKUPS');
  });
});

describe('summarizePlan', () => {
  it('counts the planned segments and bytes and names the target (latest)', () => {
    const plan = planRestore(b);
    const s = summarizePlan(plan, [a, b, c], restoreTarget({}));
    expect(s).toMatchObject({
      replica: 'file',
      generation: B,
      target: { kind: 'latest' },
      snapshot: { index: 4, size: 3500, createdAt: at(300) },
      wal: { segments: 2, indexes: 1, firstIndex: 4, lastIndex: 4, bytes: 90 },
      bytesTotal: 3500 + 90,
      stateAt: at(400),
    });
    expect(s.bytesTotal).toBe(plan.bytesTotal);
    expect(s.generations.map((g) => g.generation)).toEqual([A, B, C]);
  });

  it('with a timestamp: the snapshot at or before it and the segments up to it; a gap stops it early with stopAtGap', () => {
    // At t=260, B has the snapshot of index 0 and segments of indexes 0 and 3: 1 and 2 are missing.
    expect(thrown(() => planRestore(b, { timestamp: at(260) })).code).toBe('MISSING_WAL_INDEX');
    const s = summarizePlan(planRestore(b, { timestamp: at(260), stopAtGap: true }), [b], restoreTarget({ timestamp: at(260) }));
    expect(s.target).toEqual({ kind: 'timestamp', timestamp: at(260) });
    expect(s.snapshot.index).toBe(0);
    expect(s.wal).toEqual({ segments: 1, indexes: 1, firstIndex: 0, lastIndex: 0, bytes: 20 });
    expect(s.stateAt).toEqual(at(201));
    expect(s.truncatedReason).toMatch(/missing WAL index: b{16}\/00000001/);
    const text = formatRestorePreview({ ...s, replicaType: 'file', replicaLocation: '/r' });
    expect(text).toMatch(/^stops early {2}missing WAL index: b{16}\/00000001$/m);
  });

  it('with an index, and with the snapshot alone', () => {
    const g = gen(
      A,
      [
        [0, 0, 100],
        [2, 50, 200],
      ],
      [
        [0, 0, 1, 10],
        [1, 0, 20, 10],
        [2, 0, 51, 10],
        [3, 0, 60, 10],
      ],
    );
    const s = summarizePlan(planRestore(g, { index: 1 }), [g], restoreTarget({ index: 1 }));
    expect(s.target).toEqual({ kind: 'index', index: 1 });
    expect(s.wal).toEqual({ segments: 2, indexes: 2, firstIndex: 0, lastIndex: 1, bytes: 20 });
    expect(s.stateAt).toEqual(at(20));
    const alone = gen(A, [[7, 10, 100]], []);
    const s2 = summarizePlan(planRestore(alone), [alone], restoreTarget({}));
    expect(s2.wal).toEqual({ segments: 0, indexes: 0, firstIndex: undefined, lastIndex: undefined, bytes: 0 });
    expect(s2.bytesTotal).toBe(100);
    expect(s2.stateAt).toEqual(at(10));
  });

  it('lists only the chosen replica’s generations', () => {
    const other = gen(C, [[0, 0, 1]], [], 's3');
    const s = summarizePlan(planRestore(b), [a, other, b], restoreTarget({}));
    expect(s.generations.map((g) => g.generation)).toEqual([A, B]);
  });
});

describe('formatRestorePreview', () => {
  const preview: RestorePreview = {
    ...summarizePlan(planRestore(b), [a, b, c], restoreTarget({})),
    replicaType: 'file',
    replicaLocation: '/backups/db',
    output: { path: '/data/db.sqlite' },
  };

  it('prints the plan and an aligned table of every generation', () => {
    expect(formatRestorePreview(preview)).toBe(
      [
        'replica     file (file, /backups/db)',
        `generation  ${B}`,
        'target      latest',
        `snapshot    index 4 (hex 00000004), 3500 bytes, created ${iso(300)}`,
        'wal         2 segments in 1 index, 4 (hex 00000004) .. 4 (hex 00000004), 90 bytes',
        'download    3590 bytes (stored size of the snapshot and WAL segments)',
        `state at    ${iso(400)}`,
        'output      /data/db.sqlite',
        '',
        'generation        first restorable          last restorable           snapshots  segments',
        `${A}  ${iso(100)}  ${iso(180)}  1          4`,
        `${B}  ${iso(200)}  ${iso(400)}  2          4`,
        `${C}  -                         -                         0          1`,
        '',
      ].join('\n'),
    );
  });

  it('names the target and what a restore would do with the output', () => {
    const ts = formatRestorePreview({
      ...preview,
      target: { kind: 'timestamp', timestamp: at(5) },
      output: { path: '/x', error: { code: 'OUTPUT_EXISTS', message: 'cannot restore, output path already exists: /x' } },
    });
    expect(ts).toContain(`target      -timestamp ${iso(5)}\n`);
    expect(ts).toContain('output      /x (a restore would fail: cannot restore, output path already exists: /x)\n');
    const ix = formatRestorePreview({ ...preview, target: { kind: 'index', index: 31 }, output: undefined }, { ifDbNotExists: true });
    expect(ix).toContain('target      -index 0000001f (index 31)\n');
    expect(ix).not.toContain('output');
    expect(formatRestorePreview(preview, { ifDbNotExists: true })).toContain(
      'output      /data/db.sqlite (exists: -if-db-not-exists would skip the restore)\n',
    );
  });
});
