/**
 * What a restore is asked for and what it answers: options, progress reports and the result. Apart
 * from the code so that the planning (restore-preview.ts) and the download (restore-execute.ts,
 * restore-download.ts) share them without importing each other.
 */
import type { Logger } from '../logger.js';
import type { Pos } from '../pos.js';
import type { RestorePlan } from './restore-plan.js';

export const INTEGRITY_CHECKS = ['none', 'quick', 'full'] as const;
export type IntegrityCheck = (typeof INTEGRITY_CHECKS)[number];

export interface RestoreProgress {
  phase: 'download' | 'apply' | 'check' | 'done';
  /** Stored bytes downloaded so far. */
  bytesDone: number;
  bytesTotal: number;
  indexesApplied: number;
  indexesTotal: number;
}

export interface RestoreOptions {
  /** Where the restored database goes; must not exist (unless `replaceExisting`). */
  outputPath: string;
  /**
   * When a database is at `outputPath` already: once the restore has succeeded (built, checked and
   * fsynced under a temp name), rename it and its `-wal`, `-shm` and `-journal` aside to
   * `<output>.replaced-<UTC time>` and put the restored database in its place. Refused with
   * DATABASE_IN_USE (the temp file removed, the existing files untouched) while another process has the
   * database open; that is asked just before the renames.
   */
  replaceExisting?: boolean;
  generation?: string;
  index?: number;
  timestamp?: Date;
  /** WAL segments read at once, ahead of the one being applied (default 8, at least 1). */
  parallelism?: number;
  integrityCheck?: IntegrityCheck;
  /** On a gap, restore up to the last consistent point instead of failing. */
  stopAtGap?: boolean;
  /**
   * The output's meta directory (default `.<db>-litestream` beside it, as replication uses). A restore of
   * a generation's latest state leaves a restore marker there so that replication can continue the
   * generation (see restore-marker.ts).
   */
  metaPath?: string;
  /**
   * Leave the restore marker after a restore of the latest state (default false), for replication with
   * `continue-after-restore`. It costs a SHA-256 of the whole restored file, so it is taken only when
   * asked for. Without it a stale marker in the output's meta directory is removed.
   */
  restoreMarker?: boolean;
  logger?: Logger;
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
}

export interface RestoreResult {
  outputPath: string;
  plan: RestorePlan;
  /**
   * The replica position the restored database corresponds to: the end of the last WAL index applied, or
   * the snapshot's index at offset 0 when no WAL was applied.
   */
  position: Pos;
  /**
   * The point in time restored: the creation time of the last WAL segment applied (the upload that
   * carried the last transaction restored), or of the snapshot when it is later or no WAL was applied.
   */
  stateAt: Date;
  /** With `replaceExisting`: the names the files that were at the output path were moved to. */
  movedAside?: string[];
  /** Indexes actually applied (fewer than planned only with stopAtGap). */
  indexesApplied: number;
  /** Set when stopAtGap cut the restore short. */
  stoppedAt?: string;
  /** Set when a restore marker was written: the replica position the restored database corresponds to. */
  markerWritten?: { generation: string; index: number; offset: number };
}
