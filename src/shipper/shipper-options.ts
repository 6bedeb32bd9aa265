/** The WalShipper's options and events. */
import type { Pos } from '../pos.js';
import type { CheckpointEvent } from './checkpoint.js';
import type { CheckpointPolicy } from './checkpoint-policy.js';
import type { CheckpointStepHook } from './db-connection.js';
import type { Logger } from '../logger.js';

export interface ShipperOptions {
  dbPath: string;
  metaPath?: string;
  /** Poll period, the safety net behind file watching (default 1 s; 0 = no background syncing). */
  monitorIntervalMs?: number;
  checkpoint?: Partial<CheckpointPolicy>;
  /** SQLite busy timeout of the shipper's connections (default 1 s). */
  busyTimeoutMs?: number;
  /**
   * Most bytes of shadow WAL kept for replicas that are behind (default 1 GiB; 0: no limit). Reaching it
   * is logged as an error and starts a new generation, so the old generation's shadow files can go.
   */
  maxShadowWalBytes?: number;
  /**
   * Continue the generation a restore left a marker for (default false, as Litestream: a new generation).
   * Only safe when the database's previous replicator has stopped for good: if it is still running (a
   * rolling deployment keeps the old instance up while the new one restores), both would write into one
   * generation and interleave two histories.
   */
  continueAfterRestore?: boolean;
  /**
   * Largest size of one shadow WAL file (default 4 GiB: v0.3 names a segment by its start offset in 8 hex
   * digits). A WAL cycle that grows past it (a reader keeps the WAL from restarting) is not copied further
   * (logged as an error), and the generation ends at the next restart. Lower only in tests.
   */
  maxShadowWalFileBytes?: number;
  logger?: Logger;
  /** Fault injection for tests (see CheckpointStepHook). */
  checkpointStepHook?: CheckpointStepHook;
}

export interface GenerationEvent {
  generation: string;
  reason: string;
}

export interface ShipperEvents {
  generation: [GenerationEvent];
  checkpoint: [CheckpointEvent];
  position: [Pos];
  error: [unknown];
}
