/**
 * When to checkpoint, as Litestream v0.3.13 decides it (spec §5.7). Pure: sizes and times in, a mode
 * (or nothing) out.
 */
import { calcWalSize } from '../sqlite/wal-format.js';

export type CheckpointMode = 'PASSIVE' | 'RESTART' | 'TRUNCATE';

export interface CheckpointPolicy {
  minCheckpointPageCount: number;
  /** 0 disables forced RESTART checkpoints. */
  maxCheckpointPageCount: number;
  /** 0 disables the runaway TRUNCATE fail-safe (not configurable in Litestream: 500,000 pages). */
  truncatePageCount: number;
  /** 0 disables time-based checkpoints. */
  checkpointIntervalMs: number;
}

export const DEFAULT_CHECKPOINT_POLICY: CheckpointPolicy = {
  minCheckpointPageCount: 1000,
  maxCheckpointPageCount: 10_000,
  truncatePageCount: 500_000,
  checkpointIntervalMs: 60_000,
};

export interface CheckpointInputs {
  pageSize: number;
  /** Real WAL size before the copy. */
  walSize: number;
  /** Shadow WAL size after the copy. */
  shadowSize: number;
  /** Milliseconds since the database file last changed. */
  dbIdleMs: number;
}

export function checkpointMode(p: CheckpointPolicy, x: CheckpointInputs): CheckpointMode | undefined {
  if (p.truncatePageCount > 0 && x.walSize >= calcWalSize(x.pageSize, p.truncatePageCount)) return 'TRUNCATE';
  if (p.maxCheckpointPageCount > 0 && x.shadowSize >= calcWalSize(x.pageSize, p.maxCheckpointPageCount)) return 'RESTART';
  if (x.shadowSize >= calcWalSize(x.pageSize, p.minCheckpointPageCount)) return 'PASSIVE';
  if (p.checkpointIntervalMs > 0 && x.dbIdleMs > p.checkpointIntervalMs && x.shadowSize > calcWalSize(x.pageSize, 1)) return 'PASSIVE';
  return undefined;
}
