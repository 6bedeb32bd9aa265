/**
 * One retention run on one replica (the rule: docs/config.md, "Snapshots and retention"; its pure plan is
 * retention.ts): takes a snapshot first when none is inside the window, then deletes from what no kept
 * restore needs upwards — segments (later offsets before offset 0), then snapshots, then whole
 * generations — so a run that fails part-way leaves extra objects, never a hole in what is kept.
 */
import { collect, type ReplicaClient, type SnapshotInfo } from '../client/replica-client.js';
import { describeError, ReplicateError } from '../errors.js';
import { formatHex8 } from '../layout.js';
import type { Logger } from '../logger.js';
import type { Pos } from '../pos.js';
import { planRetention, type GenerationObjects } from './retention.js';

/** What one retention run removed (and the snapshot it took first, if none was inside the window). */
export interface RetentionResult {
  snapshotTaken?: SnapshotInfo;
  /** Per surviving generation, the lowest snapshot index kept. */
  kept: { generation: string; minIndex: number }[];
  deletedSegments: Pos[];
  deletedSnapshots: { generation: string; index: number }[];
  deletedGenerations: string[];
}

export interface RetentionRun {
  client: ReplicaClient;
  replica: string;
  log: Logger;
  retentionMs: number;
  /** Wall time the object ages are judged by. */
  now: number;
  /** Never deleted, whatever its age. */
  currentGeneration: string;
  snapshot(): Promise<SnapshotInfo>;
}

export async function runRetention(r: RetentionRun): Promise<RetentionResult> {
  const { client, replica, log, now, retentionMs } = r;
  const current = r.currentGeneration;
  let plan = planRetention({ now, retentionMs, currentGeneration: current, generations: await listAll(client) });
  let snapshotTaken: SnapshotInfo | undefined;
  if (plan.needsSnapshot) {
    log.info('no snapshot inside the retention window; taking one before deleting', { replica });
    snapshotTaken = await r.snapshot();
    plan = planRetention({
      now,
      retentionMs,
      currentGeneration: current,
      generations: await listAll(client),
      forceRetain: { generation: snapshotTaken.generation, index: snapshotTaken.index },
    });
  }
  const result: RetentionResult = { snapshotTaken, kept: plan.kept, deletedSegments: [], deletedSnapshots: [], deletedGenerations: [] };
  try {
    // Two batches, so that even a backend deleting a batch in parallel never removes an index's
    // offset 0 while a later offset of it survives.
    const later = plan.deleteSegments.filter((p) => p.offset > 0);
    const initial = plan.deleteSegments.filter((p) => p.offset === 0);
    for (const batch of [later, initial]) {
      if (batch.length === 0) continue;
      await client.deleteWalSegments(batch);
      result.deletedSegments.push(...batch);
    }
    for (const s of plan.deleteSnapshots) {
      await client.deleteSnapshot(s.generation, s.index);
      result.deletedSnapshots.push(s);
    }
    for (const g of plan.deleteGenerations) {
      if (g === current) continue; // the plan never lists it; this guards the one thing that must not happen
      await client.deleteGeneration(g);
      result.deletedGenerations.push(g);
    }
  } catch (err) {
    throw new ReplicateError('IO', `replica ${replica}: retention stopped part-way: ${describeError(err)}`, {
      cause: err,
      details: {
        deletedSegments: result.deletedSegments.length,
        deletedSnapshots: result.deletedSnapshots.length,
        deletedGenerations: result.deletedGenerations,
      },
    });
  }
  for (const k of plan.kept) {
    const segs = result.deletedSegments.filter((p) => p.generation === k.generation).length;
    const snaps = result.deletedSnapshots.filter((s) => s.generation === k.generation).length;
    if (segs + snaps > 0)
      log.info('retention: deleted below index', {
        replica,
        generation: k.generation,
        index: formatHex8(k.minIndex),
        snapshots: snaps,
        segments: segs,
      });
  }
  for (const g of result.deletedGenerations) log.info('retention: generation deleted', { replica, generation: g });
  return result;
}

async function listAll(client: ReplicaClient): Promise<GenerationObjects[]> {
  const out: GenerationObjects[] = [];
  for (const generation of await client.generations()) {
    out.push({
      generation,
      snapshots: await collect(client.snapshots(generation)),
      segments: await collect(client.walSegments(generation)),
    });
  }
  return out;
}
