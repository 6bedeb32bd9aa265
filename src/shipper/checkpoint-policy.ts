/**
 * When to checkpoint: Litestream v0.3.13's thresholds (defaults: DEFAULT_CHECKPOINT_POLICY in
 * src/config/defaults.ts; where ours differ: docs/compatibility.md, "Checkpoint frequency"), and how
 * often to try again when a checkpoint cannot restart the WAL. Pure: sizes and times in, a decision out.
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

export interface CheckpointInputs {
  pageSize: number;
  /**
   * Size of the WAL's current cycle (its committed frames). Litestream compares the raw file size here,
   * which stays large after a restart that did not truncate the file and so asks for a checkpoint on
   * every tick (a storm); our restarts cut the file back (journal_size_limit) and the cycle is what
   * matters.
   */
  walSize: number;
  /** Shadow WAL size after the copy. */
  shadowSize: number;
  /** Milliseconds (monotonic) since the last checkpoint or since the shipper started. */
  idleMs: number;
  /**
   * Bytes at the start of this shadow index that our own restart write put there (0 when the cycle
   * began otherwise). A cycle holding nothing else has nothing to checkpoint: checkpointing it would
   * restart the WAL with another write of ours, and with a low `min-checkpoint-page-count` (1 frame
   * reaches it) every sync would begin a new WAL index, uploaded to every replica, while the database
   * is idle. (Litestream does that once per monitor tick.)
   */
  ownSize?: number;
}

export function checkpointMode(p: CheckpointPolicy, x: CheckpointInputs): CheckpointMode | undefined {
  if (x.ownSize !== undefined && x.shadowSize <= x.ownSize) return undefined;
  if (p.truncatePageCount > 0 && x.walSize >= calcWalSize(x.pageSize, p.truncatePageCount)) return 'TRUNCATE';
  if (p.maxCheckpointPageCount > 0 && x.shadowSize >= calcWalSize(x.pageSize, p.maxCheckpointPageCount)) return 'RESTART';
  if (x.shadowSize >= calcWalSize(x.pageSize, p.minCheckpointPageCount)) return 'PASSIVE';
  if (p.checkpointIntervalMs > 0 && x.idleMs > p.checkpointIntervalMs && x.shadowSize > calcWalSize(x.pageSize, 1)) return 'PASSIVE';
  return undefined;
}

/**
 * Spaces out checkpoints that cannot restart the WAL. An application reader that holds an old snapshot
 * keeps the WAL from being fully backfilled; retrying on every sync (a busy database syncs dozens of
 * times a second) only takes the write lock again and again for nothing. After such an attempt the next
 * one waits `firstRetryMs`, doubling up to `maxRetryMs`; a checkpoint that restarts the WAL resets it
 * (the next one then needs the new cycle to fill up again).
 */
export class CheckpointThrottle {
  private notBefore = -Infinity;
  private retryMs: number;

  constructor(
    private readonly firstRetryMs = 1000,
    private readonly maxRetryMs = 16_000,
  ) {
    this.retryMs = firstRetryMs;
  }

  allowed(nowMs: number): boolean {
    return nowMs >= this.notBefore;
  }

  /** Records an attempt made at `nowMs`: `restarted` when the WAL restarted (the checkpoint did its job). */
  record(nowMs: number, restarted: boolean): void {
    if (restarted) {
      this.retryMs = this.firstRetryMs;
      this.notBefore = -Infinity;
      return;
    }
    this.notBefore = nowMs + this.retryMs;
    this.retryMs = Math.min(this.maxRetryMs, this.retryMs * 2);
  }

  /** An attempt that could not even take the write lock: try again after the first retry delay. */
  recordBusy(nowMs: number): void {
    this.notBefore = Math.max(this.notBefore, nowMs + Math.min(this.firstRetryMs, 250));
  }
}
