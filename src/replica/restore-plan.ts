/**
 * Restore planning: pure functions over replica listings that decide which replica, generation,
 * snapshot and WAL segments a restore uses. No I/O here, so every rule is unit-testable.
 *
 * Litestream v0.3.13's rules with its bugs left out (see docs/compatibility.md, "Restore"):
 * - generation: the greatest updatedAt (ties: first in listing order); with a timestamp T, Litestream
 *   only considers generations whose [createdAt, updatedAt] contains T — we also accept generations that
 *   ended before T, and restore the latest state at or before T;
 * - snapshot: the latest createdAt <= T (or the highest index <= the requested index);
 * - segments: in (index, offset) order up to the first one created after T (or above the index);
 * - every index from the snapshot's to the last one must have segments starting at offset 0.
 *
 * A generation restores any time from its oldest snapshot on (`restorableRange`); a timestamp before that
 * in every generation is TIMESTAMP_OUT_OF_RANGE, with the ranges in the message. `summarizePlan` turns a
 * plan into the plain data a dry run prints.
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
  /**
   * With `index`: stop that index's WAL at this byte offset, so the result is the database at exactly
   * the position (index, offset) — what validation compares with the live database. Not a CLI flag.
   */
  offset?: number;
}

export interface IndexPlan {
  readonly index: number;
  /** Segments of this index in offset order; the first is at offset 0. */
  readonly segments: readonly WalSegmentInfo[];
  /** Where to stop reading this index's WAL (PlanOptions.offset); the segments must reach it. */
  readonly endOffset?: number;
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
  if (opts.offset !== undefined && opts.index === undefined) {
    throw new ReplicateError('INVALID_ARGUMENT', 'a restore offset needs an index');
  }
  const t = opts.timestamp?.getTime();
  const snapshot = chooseSnapshot(g, opts);

  if (opts.index !== undefined) {
    const last = g.segments.reduce((n, s) => Math.max(n, s.index), snapshot.index);
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
    if (opts.offset !== undefined && index === opts.index) {
      indexes.push({ index, segments: segments!.filter((s) => s.offset < opts.offset!), endOffset: opts.offset });
    } else {
      indexes.push({ index, segments: segments! });
    }
  }

  const bytesTotal = snapshot.size + indexes.reduce((n, i) => n + i.segments.reduce((m, s) => m + s.size, 0), 0);
  return { replica: g.replica, generation: g.generation, snapshot, indexes, bytesTotal, truncatedReason };
}

function chooseSnapshot(g: GenerationListing, opts: PlanOptions): SnapshotInfo {
  let chosen: SnapshotInfo | undefined;
  if (opts.index !== undefined) {
    // To an exact offset, a snapshot of the same index could already hold pages of frames past that
    // offset (checkpointed into the file before it was taken): prefer an earlier index when there is one.
    const below = opts.offset !== undefined && g.snapshots.some((s) => s.index < opts.index!) ? opts.index - 1 : opts.index;
    for (const s of g.snapshots) {
      if (s.index <= below && (!chosen || s.index > chosen.index)) chosen = s;
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
    const range = restorableRange(g);
    const outOfRange = opts.timestamp !== undefined && range.first !== undefined;
    throw new ReplicateError(
      outOfRange ? 'TIMESTAMP_OUT_OF_RANGE' : 'NO_BACKUPS',
      `no snapshot at or before ${opts.timestamp?.toISOString() ?? 'now'} in generation ${g.generation}` +
        (outOfRange
          ? `; restorable: ${formatRestorableRanges([range])}`
          : describeSnapshots(g.snapshots, (s) => s.createdAt.toISOString())),
      { details: { generation: g.generation, ...(outOfRange ? { timestamp: opts.timestamp, ranges: [range] } : {}) } },
    );
  }
  return chosen;
}

function describeSnapshots(snapshots: readonly SnapshotInfo[], fmt: (s: SnapshotInfo) => string): string {
  if (snapshots.length === 0) return ' (it has no snapshots)';
  return ` (its first snapshot is at ${fmt(snapshots[0]!)})`;
}

/**
 * What one generation can restore: any time from its earliest snapshot on. Its last restorable time is
 * its newest object; a later timestamp restores that same last state.
 */
export interface RestorableRange {
  readonly replica: string;
  readonly generation: string;
  /** createdAt of the earliest snapshot; undefined when the generation has no snapshot (nothing restorable). */
  readonly first?: Date;
  /** createdAt of the newest snapshot or WAL segment; undefined when the generation has no snapshot. */
  readonly last?: Date;
  readonly snapshots: number;
  readonly segments: number;
  /** Stored (compressed) bytes of all its snapshots and segments. */
  readonly bytes: number;
}

export function restorableRange(g: GenerationListing): RestorableRange {
  const bytes = [...g.snapshots, ...g.segments].reduce((n, o) => n + o.size, 0);
  const base = { replica: g.replica, generation: g.generation, snapshots: g.snapshots.length, segments: g.segments.length, bytes };
  if (g.snapshots.length === 0) return base;
  const first = Math.min(...g.snapshots.map((s) => s.createdAt.getTime()));
  const last = generationBounds(g)!.updatedAt;
  return { ...base, first: new Date(first), last };
}

/** One range per generation, in listing order. */
export function restorableRanges(listings: readonly GenerationListing[]): RestorableRange[] {
  return listings.map(restorableRange);
}

/**
 * `<generation> <first> .. <last>` per generation (RFC 3339 UTC with milliseconds, exact enough to be
 * passed back as a timestamp), joined by "; ". The replica is named when the ranges span several.
 */
export function formatRestorableRanges(ranges: readonly RestorableRange[]): string {
  const several = new Set(ranges.map((r) => r.replica)).size > 1;
  const parts = ranges.map((r) => {
    const on = several ? ` on replica ${r.replica}` : '';
    if (r.first === undefined || r.last === undefined) return `${r.generation}${on} (no snapshot)`;
    return `${r.generation}${on} ${r.first.toISOString()} .. ${r.last.toISOString()}`;
  });
  return parts.join('; ') || 'nothing';
}

/**
 * The error for a timestamp before the earliest restorable point of every generation in `listings`, or
 * undefined when that is not the case (some generation restores it, or none has a snapshot at all).
 */
export function timestampOutOfRange(listings: readonly GenerationListing[], timestamp: Date, where: string): ReplicateError | undefined {
  const ranges = restorableRanges(listings);
  const firsts = ranges.flatMap((r) => (r.first ? [r.first.getTime()] : []));
  if (firsts.length === 0) return undefined;
  const earliest = Math.min(...firsts);
  if (timestamp.getTime() >= earliest) return undefined;
  return new ReplicateError(
    'TIMESTAMP_OUT_OF_RANGE',
    `no matching backups found at or before ${timestamp.toISOString()} in ${where}: the timestamp is before the earliest ` +
      `restorable point ${new Date(earliest).toISOString()}; restorable: ${formatRestorableRanges(ranges)}`,
    { details: { timestamp, earliest: new Date(earliest), ranges } },
  );
}

/** What a restore is asked for. */
export type RestoreTarget =
  | { readonly kind: 'latest' }
  | { readonly kind: 'timestamp'; readonly timestamp: Date }
  | { readonly kind: 'index'; readonly index: number };

export function restoreTarget(opts: Pick<PlanOptions, 'index' | 'timestamp'>): RestoreTarget {
  if (opts.timestamp !== undefined) return { kind: 'timestamp', timestamp: opts.timestamp };
  if (opts.index !== undefined) return { kind: 'index', index: opts.index };
  return { kind: 'latest' };
}

/** A restore plan as plain data: what a dry run prints. */
export interface RestorePlanSummary {
  readonly replica: string;
  readonly generation: string;
  readonly target: RestoreTarget;
  readonly snapshot: { readonly index: number; readonly size: number; readonly createdAt: Date };
  readonly wal: {
    /** Segments to download and apply. */
    readonly segments: number;
    /** WAL indexes they belong to (consecutive, from the snapshot's index). */
    readonly indexes: number;
    readonly firstIndex?: number;
    readonly lastIndex?: number;
    /** Stored bytes of the segments. */
    readonly bytes: number;
  };
  /** Stored (compressed) bytes to download: snapshot + segments. */
  readonly bytesTotal: number;
  /** The newest createdAt among the planned objects: the restored state is the one replicated by then. */
  readonly stateAt: Date;
  /** Why the plan stops early (only with stopAtGap). */
  readonly truncatedReason?: string;
  /** Every generation of the chosen replica, in listing order. */
  readonly generations: readonly RestorableRange[];
}

/** Describes a plan made from `listings` (the replicas' generations) as plain data. */
export function summarizePlan(plan: RestorePlan, listings: readonly GenerationListing[], target: RestoreTarget): RestorePlanSummary {
  const segments = plan.indexes.flatMap((i) => i.segments);
  const walBytes = segments.reduce((n, s) => n + s.size, 0);
  // A loop, not Math.max(...): a long-lived generation can have more segments than a call has arguments.
  const stateAt = segments.reduce((t, s) => Math.max(t, s.createdAt.getTime()), plan.snapshot.createdAt.getTime());
  return {
    replica: plan.replica,
    generation: plan.generation,
    target,
    snapshot: { index: plan.snapshot.index, size: plan.snapshot.size, createdAt: plan.snapshot.createdAt },
    wal: {
      segments: segments.length,
      indexes: plan.indexes.length,
      firstIndex: plan.indexes[0]?.index,
      lastIndex: plan.indexes.at(-1)?.index,
      bytes: walBytes,
    },
    bytesTotal: plan.bytesTotal,
    stateAt: new Date(stateAt),
    truncatedReason: plan.truncatedReason,
    generations: restorableRanges(listings.filter((g) => g.replica === plan.replica)),
  };
}
