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
 * The next index starts under the write lock again.
 *
 * Litestream releases its read lock and checkpoints without the write lock, so a transaction committed
 * between its copy and its checkpoint can be backfilled and overwritten without ever being copied.
 */
import type { CheckpointMode } from './checkpoint-policy.js';
import type { ShipperDb } from './db-connection.js';
import type { ShadowCursor } from './shadow-cursor.js';
import { readWalHeaderBytesSync } from './shadow-wal.js';

export interface CheckpointEvent {
  mode: CheckpointMode;
  log: number;
  checkpointed: number;
  /** Set when the WAL restarted and a new shadow index began. */
  newIndex?: number;
}

export type CheckpointOutcome = { busy: true } | { busy: false; restarted: boolean; event: CheckpointEvent };

/** Runs the sequence; `busy` when an application write transaction kept the write lock for `lockWaitMs`. */
export function runCheckpoint(db: ShipperDb, cursor: ShadowCursor, walPath: string, mode: CheckpointMode, lockWaitMs: number): CheckpointOutcome {
  const before = cursor.current!;
  const out = db.tryWithWriteLock(lockWaitMs, () => {
    cursor.copy(true);
    db.step('copied');
    db.releaseRead();
    const result = db.passiveCheckpoint();
    db.step('checkpointed');
    db.relockRead();
    db.step('relocked');
    return result;
  });
  if (!out) return { busy: true };
  db.step('unlocked');
  const result = out.value;
  if (result.busy === 0 && result.log > 0 && result.checkpointed === result.log) {
    db.tryWithWriteLock(lockWaitMs, () => db.writeSeq(), { commit: true });
    db.step('committed');
  }
  const real = readWalHeaderBytesSync(walPath);
  const restarted = real !== undefined && !real.equals(before.header);
  let newIndex: number | undefined;
  if (restarted) {
    // Busy: the next sync follows the restart (our slot-0 reader keeps a second one from happening first).
    if (db.tryWithWriteLock(lockWaitMs, () => cursor.followRestartLocked(db, real)) && cursor.current!.generation === before.generation) {
      newIndex = cursor.current!.index;
    }
  } else {
    cursor.copy(false); // our own seq frame, if any
  }
  return { busy: false, restarted, event: { mode, log: result.log, checkpointed: result.checkpointed, ...(newIndex !== undefined ? { newIndex } : {}) } };
}
