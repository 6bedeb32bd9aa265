/**
 * Pure retention and snapshot-schedule planning (docs/config.md, "Snapshots and retention"): given what a
 * replica holds and the time, decide what goes. No I/O here, so the rules can be tested on any history
 * without a store.
 *
 * Litestream's rule, which this follows so that both tools prune a shared replica the same way:
 * - retained = every snapshot (of any generation) created at or after `now - retention`; when there is
 *   none, the caller takes a snapshot first and that one is the only retained snapshot;
 * - a generation with no retained snapshot is deleted whole — except the current generation, which the
 *   replica is writing to (it keeps its newest snapshot instead, so a clock jump never empties it);
 * - in every other generation, with `m` the lowest retained snapshot index, snapshots and WAL segments
 *   below index `m` are deleted (index `m` is kept from offset 0: restore replays it from there).
 */
import type { SnapshotInfo, WalSegmentInfo } from '../client/replica-client.js';
import type { Pos } from '../pos.js';

export interface GenerationObjects {
  generation: string;
  snapshots: readonly SnapshotInfo[];
  segments: readonly WalSegmentInfo[];
}

export interface RetentionInput {
  /** Milliseconds since the epoch. */
  now: number;
  retentionMs: number;
  /** The generation the database is in; never deleted. */
  currentGeneration?: string;
  generations: readonly GenerationObjects[];
  /** A snapshot just taken because none was inside the window: retained whatever its timestamp says. */
  forceRetain?: { generation: string; index: number };
}

export interface RetentionPlan {
  /** No snapshot is inside the window: take one, then plan again with it as `forceRetain`. */
  needsSnapshot: boolean;
  /** Per surviving generation, the lowest kept snapshot index (restores start there or later). */
  kept: { generation: string; minIndex: number }[];
  /**
   * Segments below the kept index of their generation. Ordered so that every offset > 0 comes before
   * any offset 0: a run cut short then leaves indexes that still start at offset 0, which Litestream's
   * restore insists on even for indexes below the snapshot it restores from.
   */
  deleteSegments: Pos[];
  deleteSnapshots: { generation: string; index: number }[];
  deleteGenerations: string[];
}

export function planRetention(input: RetentionInput): RetentionPlan {
  const threshold = input.now - input.retentionMs;
  const isRetained = (g: string, s: SnapshotInfo) =>
    s.createdAt.getTime() >= threshold || (input.forceRetain?.generation === g && input.forceRetain.index === s.index);
  const anyRetained = input.generations.some((g) => g.snapshots.some((s) => isRetained(g.generation, s)));
  const plan: RetentionPlan = { needsSnapshot: false, kept: [], deleteSegments: [], deleteSnapshots: [], deleteGenerations: [] };
  if (!anyRetained) {
    plan.needsSnapshot = true;
    return plan;
  }
  const high: Pos[] = [];
  const low: Pos[] = [];
  for (const g of input.generations) {
    const retained = g.snapshots.filter((s) => isRetained(g.generation, s));
    let minIndex: number | undefined;
    if (retained.length > 0) {
      minIndex = Math.min(...retained.map((s) => s.index));
    } else if (g.generation === input.currentGeneration) {
      // Only reachable when another generation has a snapshot in the window but the current one does
      // not (clock skew between objects): keep the current generation restorable from its newest one.
      if (g.snapshots.length > 0) minIndex = Math.max(...g.snapshots.map((s) => s.index));
      else {
        // No snapshot yet (the replica has not synced this generation): nothing to judge it by.
        continue;
      }
    } else {
      plan.deleteGenerations.push(g.generation);
      continue;
    }
    plan.kept.push({ generation: g.generation, minIndex });
    for (const s of g.snapshots) if (s.index < minIndex) plan.deleteSnapshots.push({ generation: g.generation, index: s.index });
    for (const s of g.segments) {
      if (s.index >= minIndex) continue;
      (s.offset > 0 ? high : low).push({ generation: g.generation, index: s.index, offset: s.offset });
    }
  }
  plan.deleteSegments = [...high, ...low];
  return plan;
}

export function isEmptyPlan(p: RetentionPlan): boolean {
  return p.deleteSegments.length === 0 && p.deleteSnapshots.length === 0 && p.deleteGenerations.length === 0;
}

/** Retention checks run every `min(check interval, retention)` (a check less often than the window would let it overrun). */
export function retentionCheckPeriod(retentionMs: number, checkIntervalMs: number): number {
  return Math.min(checkIntervalMs, retentionMs);
}

/**
 * Delay before the first scheduled snapshot: a replica that already holds a snapshot of the current
 * generation continues its rhythm (due at latest + interval, at once when overdue) instead of
 * snapshotting on every restart; otherwise one full interval.
 */
export function firstSnapshotDelay(intervalMs: number, now: number, latestSnapshotAt?: number): number {
  if (latestSnapshotAt === undefined) return intervalMs;
  return Math.max(0, Math.min(intervalMs, latestSnapshotAt + intervalMs - now));
}
