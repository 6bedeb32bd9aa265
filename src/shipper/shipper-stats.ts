/**
 * The shipper's figures for monitoring (Litestream's per-database metrics): the counters the follow loop
 * increments on the way, and the report WalShipper.stats() builds from them. Apart from the shipper so
 * that what is counted, and what each figure means, reads in one place.
 */
import { statSync } from 'node:fs';
import type { CheckpointMode } from './checkpoint-policy.js';

/** Counters for monitoring (see WalShipper.stats()): plain numbers, incremented on the way. */
export interface ShipperCounters {
  syncCount: number;
  syncErrorCount: number;
  syncSeconds: number;
  checkpoints: Record<CheckpointMode, CheckpointCounts>;
}

/** Checkpoints of one mode run by the shipper: Litestream's checkpoint_count, _error_count, _seconds. */
export interface CheckpointCounts {
  count: number;
  errorCount: number;
  seconds: number;
}

export function newShipperCounters(): ShipperCounters {
  return {
    syncCount: 0,
    syncErrorCount: 0,
    syncSeconds: 0,
    checkpoints: { PASSIVE: newCheckpointCounts(), RESTART: newCheckpointCounts(), TRUNCATE: newCheckpointCounts() },
  };
}

function newCheckpointCounts(): CheckpointCounts {
  return { count: 0, errorCount: 0, seconds: 0 };
}

/** The shipper's figures (see WalShipper.stats()). Sizes in bytes; undefined while not known. */
export interface ShipperStats {
  /** The database file's size now (litestream_db_size). */
  dbSizeBytes: number | undefined;
  /** The -wal file's size now (litestream_wal_size). */
  walSizeBytes: number | undefined;
  /** Bytes written to shadow WAL files by this process (litestream_total_wal_bytes). */
  totalWalBytes: number;
  /** The current shadow WAL index (litestream_shadow_wal_index). */
  shadowWalIndex: number | undefined;
  /** Bytes of shadow WAL files of the current generation, as of the last sync (litestream_shadow_wal_size). */
  shadowWalSizeBytes: number;
  syncCount: number;
  syncErrorCount: number;
  syncSeconds: number;
  checkpoints: Record<CheckpointMode, CheckpointCounts>;
}

/**
 * The figures as they are now: a copy of the counters, and the database and WAL file sizes (a stat of
 * each; no descriptor is opened).
 */
export function shipperStats(
  c: ShipperCounters,
  at: { dbPath: string; walPath: string; totalWalBytes: number; shadowWalIndex: number | undefined; shadowWalSizeBytes: number },
): ShipperStats {
  const checkpoints = {} as Record<CheckpointMode, CheckpointCounts>;
  for (const mode of ['PASSIVE', 'RESTART', 'TRUNCATE'] as const) checkpoints[mode] = { ...c.checkpoints[mode] };
  return {
    dbSizeBytes: fileSize(at.dbPath),
    walSizeBytes: fileSize(at.walPath),
    totalWalBytes: at.totalWalBytes,
    shadowWalIndex: at.shadowWalIndex,
    shadowWalSizeBytes: at.shadowWalSizeBytes,
    syncCount: c.syncCount,
    syncErrorCount: c.syncErrorCount,
    syncSeconds: c.syncSeconds,
    checkpoints,
  };
}

function fileSize(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
}
