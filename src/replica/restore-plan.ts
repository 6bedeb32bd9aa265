/**
 * Restore planning: pure functions over replica listings that decide which replica, generation,
 * snapshot and WAL segments a restore uses. No I/O here, so every rule is unit-testable.
 *
 * Litestream v0.3.13's rules (spec §7) with its bugs left out (see docs/compatibility.md):
 * - generation: the greatest updatedAt (ties: first in listing order); with a timestamp T, Litestream
 *   only considers generations whose [createdAt, updatedAt] contains T — we also accept generations that
 *   ended before T, and restore the latest state at or before T;
 * - snapshot: the latest createdAt <= T (or the highest index <= the requested index);
 * - segments: in (index, offset) order up to the first one created after T (or above the index);
 * - every index from the snapshot's to the last one must have segments starting at offset 0.
 */
import { ReplicateError } from '../errors.js';
import { formatHex8 } from '../layout.js';
import type { SnapshotInfo, WalSegmentInfo } from '../client/replica-client.js';

/** Everything a replica holds for one generation, in listing order. */
export interface GenerationListing {
  readonly replica: string;
  readonly generation: string;
  readonly snapshots: readonly SnapshotInfo[];
  readonly segments: readonly WalSegmentInfo[];
}

export interface GenerationBounds {
  createdAt: Date;
  updatedAt: Date;
}

/** min/max createdAt over a generation's snapshots and segments; undefined when it holds nothing. */
export function generationBounds(g: GenerationListing): GenerationBounds | undefined {
  let min = Infinity;
  let max = -Infinity;
  for (const o of [...g.snapshots, ...g.segments]) {
    const t = o.createdAt.getTime();
    if (t < min) min = t;
    if (t > max) max = t;
  }
  if (min === Infinity) return undefined;
  return { createdAt: new Date(min), updatedAt: new Date(max) };
}

export interface TargetOptions {
  generation?: string;
  timestamp?: Date;
}

/**
 * Picks the generation to restore among the listings of one or more replicas (in replica order, then
 * generation listing order). Without a timestamp: the greatest updatedAt. With one: among generations
 * that started at or before T, the one whose state at T is the newest (min(updatedAt, T)); ties go to
 * the generation that started last (the live lineage at T), then to listing order.
 */
export function chooseGeneration(listings: readonly GenerationListing[], opts: TargetOptions = {}): GenerationListing | undefined {
  let best: { g: GenerationListing; key: number; createdAt: number } | undefined;
  for (const g of listings) {
    if (opts.generation !== undefined && g.generation !== opts.generation) continue;
    const bounds = generationBounds(g);
    if (!bounds || g.snapshots.length === 0) continue;
    const created = bounds.createdAt.getTime();
    let key = bounds.updatedAt.getTime();
    if (opts.timestamp !== undefined) {
      const t = opts.timestamp.getTime();
      if (t < created) continue;
      if (!g.snapshots.some((s) => s.createdAt.getTime() <= t)) continue;
      key = Math.min(key, t);
    }
    if (!best || key > best.key || (key === best.key && opts.timestamp !== undefined && created > best.createdAt)) {
      best = { g, key, createdAt: created };
    }
  }
  return best?.g;
}

export interface PlanOptions {
  /** Restore up to and including this WAL index. */
  index?: number;
  /** Restore the state at this time. */
  timestamp?: Date;
  /** On a missing index or segment, restore up to the last consistent point instead of failing. */
  stopAtGap?: boolean;
}

export interface IndexPlan {
  readonly index: number;
  /** Segments of this index in offset order; the first is at offset 0. */
  readonly segments: readonly WalSegmentInfo[];
}

export interface RestorePlan {
  readonly replica: string;
  readonly generation: string;
  readonly snapshot: SnapshotInfo;
  /** WAL indexes to apply, in order, from the snapshot's index on. */
  readonly indexes: readonly IndexPlan[];
  /** Stored bytes to download (snapshot + segments). */
  readonly bytesTotal: number;
  /** Why the plan stops early, when `stopAtGap` allowed it to. */
  readonly truncatedReason?: string;
}

export function planRestore(g: GenerationListing, opts: PlanOptions = {}): RestorePlan {
  if (opts.index !== undefined && opts.timestamp !== undefined) {
    throw new ReplicateError('INVALID_ARGUMENT', 'cannot specify index & timestamp to restore');
  }
  const t = opts.timestamp?.getTime();
  const snapshot = chooseSnapshot(g, opts);

  if (opts.index !== undefined) {
    const last = Math.max(snapshot.index, ...g.segments.map((s) => s.index));
    if (opts.index > last) {
      throw new ReplicateError(
        'INVALID_ARGUMENT',
        `restore to index ${formatHex8(opts.index)}: generation ${g.generation} ends at index ${formatHex8(last)}`,
        { details: { generation: g.generation, index: opts.index, lastIndex: last } },
      );
    }
  }

  // Segments in (index, offset) order, cut at the first one past the requested point.
  const ordered = [...g.segments].sort((a, b) => a.index - b.index || a.offset - b.offset);
  const byIndex = new Map<number, WalSegmentInfo[]>();
  for (const s of ordered) {
    if (t !== undefined && s.createdAt.getTime() > t) break;
    if (opts.index !== undefined && s.index > opts.index) break;
    if (s.index < snapshot.index) continue; // already inside the snapshot
    let list = byIndex.get(s.index);
    if (!list) byIndex.set(s.index, (list = []));
    list.push(s);
  }

  const indexes: IndexPlan[] = [];
  let truncatedReason: string | undefined;
  const maxIndex = Math.max(-1, ...byIndex.keys());
  for (let index = snapshot.index; index <= maxIndex; index++) {
    const segments = byIndex.get(index);
    let problem: ReplicateError | undefined;
    if (!segments) {
      problem = new ReplicateError('MISSING_WAL_INDEX', `missing WAL index: ${g.generation}/${formatHex8(index)}`, {
        details: { generation: g.generation, index },
      });
    } else if (segments[0]!.offset !== 0) {
      problem = new ReplicateError(
        'MISSING_INITIAL_SEGMENT',
        `missing initial wal segment: generation=${g.generation} index=${formatHex8(index)} offset=${segments[0]!.offset}`,
        { details: { generation: g.generation, index, offset: segments[0]!.offset } },
      );
    }
    if (problem) {
      if (!opts.stopAtGap) throw problem;
      truncatedReason = problem.message;
      break;
    }
    indexes.push({ index, segments: segments! });
  }

  const bytesTotal = snapshot.size + indexes.reduce((n, i) => n + i.segments.reduce((m, s) => m + s.size, 0), 0);
  return { replica: g.replica, generation: g.generation, snapshot, indexes, bytesTotal, truncatedReason };
}

function chooseSnapshot(g: GenerationListing, opts: PlanOptions): SnapshotInfo {
  let chosen: SnapshotInfo | undefined;
  if (opts.index !== undefined) {
    for (const s of g.snapshots) {
      if (s.index <= opts.index && (!chosen || s.index > chosen.index)) chosen = s;
    }
    if (!chosen) {
      throw new ReplicateError(
        'NO_BACKUPS',
        `no snapshot at or before index ${formatHex8(opts.index)} in generation ${g.generation}` +
          describeSnapshots(g.snapshots, (s) => `index ${formatHex8(s.index)}`),
        { details: { generation: g.generation } },
      );
    }
    return chosen;
  }
  const t = opts.timestamp?.getTime();
  for (const s of g.snapshots) {
    if (t !== undefined && s.createdAt.getTime() > t) continue;
    if (!chosen || s.createdAt.getTime() > chosen.createdAt.getTime()) chosen = s;
  }
  if (!chosen) {
    throw new ReplicateError(
      'NO_BACKUPS',
      `no snapshot at or before ${opts.timestamp?.toISOString() ?? 'now'} in generation ${g.generation}` +
        describeSnapshots(g.snapshots, (s) => s.createdAt.toISOString()),
      { details: { generation: g.generation } },
    );
  }
  return chosen;
}

function describeSnapshots(snapshots: readonly SnapshotInfo[], fmt: (s: SnapshotInfo) => string): string {
  if (snapshots.length === 0) return ' (it has no snapshots)';
  return ` (its first snapshot is at ${fmt(snapshots[0]!)})`;
}
