/**
 * Pinning the live database at a position for validation, and digesting it there.
 *
 * Only the pin holds the application up: under the write lock the new frames are copied to the shadow
 * WAL (so the position is one the replicas upload to) and a read transaction is begun on a connection of
 * its own, fixing what it sees at exactly that position. The digest is then read with no lock that
 * writers wait on — the read transaction only keeps checkpoints from going past it — so the stall is one
 * incremental copy, where Litestream forces a RESTART checkpoint (waiting for every reader and copying
 * the whole WAL into the database) and reads the file while checkpoints are held off.
 */
import Database from 'better-sqlite3';
import { ReplicateError } from '../errors.js';
import type { Pos } from '../pos.js';
import { digestLiveDatabase, type DatabaseDigest } from './database-digest.js';
import type { DatabaseFile } from './database-file.js';
import { LOCK_WAIT_MS, type ShipperDb } from './db-connection.js';
import type { ShadowCursor } from './shadow-cursor.js';

export interface PinnedDigest {
  pos: Pos;
  digest: DatabaseDigest;
}

export interface PinContext {
  /** Runs `fn` in the shipper's queue of database work (after every sync queued before it). */
  runDbWork<T>(fn: () => Promise<T>): Promise<T>;
  sync(): Promise<void>;
  /**
   * Under the write lock: copies what is committed, calls `pin` (which begins the reader's transaction)
   * and returns the position and whether the WAL was fully backfilled then; undefined when the WAL
   * restarted since the last sync or the lock was busy.
   */
  pinLocked(pin: () => void): { pos: Pos; backfilled: boolean } | undefined;
  dbPath: string;
  walPath: string;
  file(): DatabaseFile;
  busyTimeoutMs: number;
}

/**
 * A read transaction of a connection of its own, begun at exactly the shipper's position: until
 * `release()`, checkpoints cannot backfill past it (nor, in read slot ≥ 1, restart the WAL), so the
 * database file and the WAL up to `pos` stay as they are. For validation and for snapshots.
 */
export interface PinnedPosition {
  pos: Pos;
  /** The WAL was fully backfilled at the pin: the database file alone is the image at `pos`. */
  backfilled: boolean;
  release(): void;
}

export async function pinPosition(ctx: PinContext, purpose: string): Promise<PinnedPosition> {
  for (let attempt = 0; ; attempt++) {
    const pinned = await ctx.runDbWork(async () => {
      // A connection SQLite opens and closes itself: it never drops the locks of the others.
      const reader = new Database(ctx.dbPath, { readonly: true, fileMustExist: true, timeout: ctx.busyTimeoutMs });
      try {
        const at = ctx.pinLocked(() => {
          reader.exec('BEGIN');
          reader.prepare('SELECT COUNT(1) FROM sqlite_master').pluck().get();
        });
        if (!at) {
          reader.close();
          return undefined;
        }
        return { ...at, release: () => reader.close() }; // read-only: closing never checkpoints or deletes the WAL
      } catch (err) {
        reader.close();
        throw err;
      }
    });
    if (pinned) return pinned;
    if (attempt >= 3)
      throw new ReplicateError('IO', `the WAL keeps restarting (or the database stays locked); cannot pin a position for ${purpose}`);
    await ctx.sync();
  }
}

/** PinContext.pinLocked on the shipper's connections: pins at the end of the shadow WAL, settled first. */
export function pinAtShadowEnd(
  db: ShipperDb,
  cursor: ShadowCursor,
  dbPath: string,
  pin: () => void,
): { pos: Pos; backfilled: boolean } | undefined {
  const out = db.tryWithWriteLock(LOCK_WAIT_MS, () => {
    // Restarted (or not settled) since the last sync: followed here; then pin again.
    if (!cursor.settleLocked(db)) return undefined;
    // Past the offset limit the shadow lags SQLite: no image at its end exists to pin.
    if (cursor.current!.capped)
      throw new ReplicateError(
        'IO',
        `${dbPath}: the wal cycle is past the offset limit of v0.3 segment names; nothing can be pinned until it restarts`,
      );
    pin();
    return { pos: cursor.pos()!, backfilled: db.fullyBackfilled() };
  });
  return out?.value;
}

export async function pinAndDigest(ctx: PinContext): Promise<PinnedDigest> {
  const pinned = await pinPosition(ctx, 'validation');
  try {
    return {
      pos: pinned.pos,
      digest: await digestLiveDatabase(ctx.file(), ctx.walPath, pinned.pos.offset, { overlay: !pinned.backfilled }),
    };
  } finally {
    pinned.release();
  }
}
