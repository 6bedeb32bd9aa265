/**
 * A checkpoint that loses nothing.
 *
 * Under the write lock (no commit, no restart meanwhile): every committed frame goes to the shadow
 * (fsynced), our read transaction is released, a PASSIVE checkpoint backfills, and the read transaction
 * is taken again at the WAL's end — in slot 0 when the WAL was fully backfilled, so it does not hold up
 * the restart, and blocks every later backfill, so at most one restart can follow. Then, if everything
 * was backfilled, our seq write in a transaction of its own (SQLite restarts the WAL only for a writer
 * whose transaction began on a fully backfilled WAL) restarts the WAL and cuts the file back
 * (journal_size_limit); an application commit that gets in first restarts it instead, which is as good.
 * The restart is noted at once (the next index's header, durable: ShadowCursor.noteRestartUnlocked), and
 * the next index starts under the write lock again; for a kill inside the seq write or before that note,
 * the seq write is announced first (seq-write-note.ts).
 *
 * A PASSIVE checkpoint before the write lock, while our read transaction is held, can copy frames into
 * the database file only up to our read mark, and cannot restart the WAL (a reader is on it), so nothing
 * can be lost by it. But the read transaction is taken when an index begins, at the first frames of the
 * cycle, so that one backfills only those: the rest of the cycle is backfilled under the lock (measured:
 * 61 of 1,561 frames with the mark there), and the application's writers wait for it.
 *
 * Litestream releases its read lock and checkpoints without the write lock, so a transaction committed
 * between its copy and its checkpoint can be backfilled and overwritten without ever being copied.
 */
import type { CheckpointMode } from './checkpoint-policy.js';
import type { ShipperDb } from './db-connection.js';
import type { ShadowCursor } from './shadow-cursor.js';

export interface CheckpointEvent {
  mode: CheckpointMode;
  log: number;
  checkpointed: number;
  /** Set when the WAL restarted and a new shadow index began. */
  newIndex?: number;
}

export type CheckpointOutcome =
  /** An application write transaction kept the write lock for `lockWaitMs`. */
  | { busy: true }
  /** The WAL had restarted (or diverged) before the checkpoint could begin: followed instead. */
  | { busy: false; followed: true }
  | {
      busy: false;
      followed: false;
      restarted: boolean;
      /** The new cycle began with our seq write (no application frame before it). */ seqBeganCycle: boolean;
      event: CheckpointEvent;
    };

/** Runs the sequence (see above). */
export function runCheckpoint(db: ShipperDb, cursor: ShadowCursor, mode: CheckpointMode, lockWaitMs: number): CheckpointOutcome {
  const before = cursor.current!;
  db.passiveCheckpoint(); // bounded by our read mark; see above
  // Every frame committed so far copied and fsynced before the lock (what a durable sync does), so the
  // settle under the lock has only the last few frames to copy and fsync: most syncs are not durable
  // (file notifications), and flushing up to a second's worth of copies under the lock held it for
  // milliseconds — which, with the shipper in a worker thread, the application's commits wait out (their
  // busy handler sleeps 1, 2, 5, 10 ms…). A restart before this copy is left to the settle below.
  cursor.copyUnlocked(db, true);
  db.step('prebackfilled');
  const out = db.tryWithWriteLock(lockWaitMs, () => {
    // The shadow must be exactly what SQLite has committed in the WAL's cycle before the relock below
    // vouches for it. A restart that came before the lock is followed instead (the relock would vouch
    // for a cycle never copied), as is a shadow that cannot go on (a new generation).
    if (!cursor.settleLocked(db)) return undefined;
    db.step('copied');
    db.releaseRead();
    const result = db.passiveCheckpoint();
    db.step('checkpointed');
    cursor.relockLocked(db);
    db.step('relocked');
    return result;
  });
  if (!out) return { busy: true };
  if (!out.value) return { busy: false, followed: true };
  db.step('unlocked');
  const result = out.value;
  // Whether our seq write is what began the next cycle (the WAL was still the fully backfilled old one
  // under the lock), as opposed to an application commit that got in first.
  let seqBeganCycle = false;
  if (result.busy === 0 && result.log > 0 && result.checkpointed === result.log) {
    // An application's commit may have restarted the WAL already, and its next one may keep the lock
    // our seq write waits for: noted first (see below; a read of the header when nothing restarted).
    cursor.noteRestartUnlocked(db);
    let wrote: { value: void } | undefined;
    try {
      wrote = db.tryWithWriteLock(
        lockWaitMs,
        () => {
          const idx = db.walIndex();
          seqBeganCycle = idx !== undefined && idx.committed === result.log && idx.backfilled === result.log;
          // For start-up, should we be killed inside this write or before the restart is noted below
          // (only when this write is what begins the next cycle).
          cursor.noteSeqWriteLocked(db, seqBeganCycle);
          db.step('seq-noted');
          db.writeSeq();
        },
        { commit: true },
      );
    } catch (err) {
      cursor.dropSeqWriteNote();
      throw err;
    }
    if (wrote) db.step('seq-written');
    // Restarted now (by our write or an application's commit before it): noted before the lock below,
    // which an application's write may keep, so that a crash meanwhile does not end the generation.
    cursor.noteRestartUnlocked(db);
    db.step('committed');
  }
  let newIndex: number | undefined;
  // Busy: the next sync follows the restart (our slot-0 reader keeps a second one from happening first).
  if (db.tryWithWriteLock(lockWaitMs, () => cursor.settleLocked(db))) {
    const now = cursor.current!;
    if (now.generation === before.generation && now.index !== before.index) newIndex = now.index;
  }
  const now = cursor.current!;
  const restarted = now.generation !== before.generation || now.index !== before.index;
  return {
    busy: false,
    followed: false,
    restarted,
    seqBeganCycle: restarted && seqBeganCycle,
    event: { mode, log: result.log, checkpointed: result.checkpointed, ...(newIndex !== undefined ? { newIndex } : {}) },
  };
}
