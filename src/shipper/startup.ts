/**
 * The start-up decision: does the generation on disk continue? The shadow must still mirror the WAL (the
 * same header, its last frame still there), or the WAL must be its provably next cycle; a restore marker
 * may let a restored generation continue; otherwise a new generation, with the reason (the reasons Litestream
 * v0.3.13 gives too: no generation, no shadow WAL, a short one, the max index exceeded, a changed WAL
 * header). The preparation runs without locks (repairs, the bulk of the copy, the restore
 * checks); the decision is made under the write lock, and ends with the read transaction taken.
 */
import { MAX_INDEX, formatHex8 } from '../layout.js';
import type { Logger } from '../logger.js';
import { frameAlign, parseWalHeader } from '../sqlite/wal-format.js';
import type { ShipperDb } from './db-connection.js';
import type { MetaDir } from '../meta/meta-dir.js';
import type { PreparedRestore, RestoreCandidate, RestoreContinuation } from './restore-continuation.js';
import { writeContinuedFromSync } from '../meta/restore-marker.js';
import type { ShadowCursor } from './shadow-cursor.js';
import { copyToShadow } from './shadow-copy.js';
import { seqWriteBeganCycle, type SeqWriteNote } from './seq-write-note.js';
import { fsyncFileSync, oldCycleEndedAtShadow, readWalHeaderBytesSync, repairShadow, walFirstFrameOf } from './shadow-wal.js';

export interface StartContext {
  db: ShipperDb;
  meta: MetaDir;
  cursor: ShadowCursor;
  restore: RestoreContinuation;
  dbPath: string;
  walPath: string;
  log: Logger;
}

/** What the unlocked preparation found. */
export interface StartPlan {
  generation: string | undefined;
  index: number | undefined;
  /** With no generation: whether a restore can be continued (see RestoreContinuation.prepare). */
  restored: PreparedRestore | undefined;
  /** The note of a seq write our checkpoint began on the last index (seq-write-note.ts), if any. */
  seqWrite: SeqWriteNote | undefined;
}

export async function prepareStart(c: StartContext, seqWriteNote?: SeqWriteNote): Promise<StartPlan> {
  const generation = await c.meta.readGeneration();
  await c.restore.load(generation);
  if (generation === undefined)
    return { generation, index: undefined, restored: await c.restore.prepare(c.db.file, c.walPath), seqWrite: undefined };
  const index = (await c.meta.shadowIndexes(generation)).at(-1);
  if (index === undefined) return { generation, index, restored: undefined, seqWrite: undefined };
  const seqWrite = seqWriteNote?.generation === generation && seqWriteNote.index === index ? seqWriteNote : undefined;
  const shadowPath = c.meta.shadowWalPath(generation, index);
  const repaired = repairShadow(shadowPath);
  if (repaired && repaired.cut > 0) {
    c.log.warn('shadow wal ended past its last commit (a crash); cut back', {
      db: c.dbPath,
      generation,
      index: formatHex8(index),
      bytes: repaired.cut,
    });
  }
  const real = readWalHeaderBytesSync(c.walPath);
  if (repaired && real && real.equals(c.meta.shadowHeaderSync(generation, index) ?? Buffer.alloc(0))) {
    // The bulk of what was written meanwhile, so that the locked part is short (up to SQLite's commit point).
    const committed = c.db.committedFramesOf(real);
    if (committed !== undefined)
      copyToShadow(c.walPath, shadowPath, { fsync: false, maxSize: c.cursor.maxFileBytes, verifyLastFrame: true, maxFrames: committed });
  }
  return { generation, index, restored: undefined, seqWrite };
}

/**
 * The decision, under the write lock. False when the WAL has no header (an application's TRUNCATE since
 * the caller gave it one): nothing decided, give it a header and call again.
 */
export function decideStartLocked(c: StartContext, plan: StartPlan): boolean {
  const { db, meta, cursor, log } = c;
  const real = readWalHeaderBytesSync(c.walPath);
  if (!real) return false;
  const { generation, index, restored } = plan;
  let reason: string;
  if (generation === undefined) {
    reason = 'no generation exists';
    if (restored?.ok) {
      const refused = unpublishedRestart(db, c.walPath, real) ? UNPUBLISHED_RESTART : c.restore.lockedCheck(restored.candidate, c.walPath);
      if (refused === undefined) {
        continueRestoredLocked(c, restored.candidate, real);
        return true;
      }
      reason += `; ${refused}`;
    } else if (restored) {
      reason += `; ${restored.reason}`;
    }
  } else if (index === undefined) {
    reason = 'no shadow wal';
  } else {
    const shadowPath = meta.shadowWalPath(generation, index);
    const shadow = meta.shadowHeaderSync(generation, index);
    if (!shadow) {
      reason = 'short shadow wal';
    } else if (index >= MAX_INDEX) {
      reason = 'max index exceeded';
    } else if (unpublishedRestart(db, c.walPath, real)) {
      reason = UNPUBLISHED_RESTART;
    } else if (real.equals(shadow)) {
      // Up to SQLite's commit point (under our write lock nothing commits), checked against it.
      const committed = db.committedFrames();
      const copy = copyToShadow(c.walPath, shadowPath, { maxSize: cursor.maxFileBytes, verifyLastFrame: true, maxFrames: committed });
      const pageSize = parseWalHeader(real).pageSize;
      const walSize = frameAlign(meta.fileSizeSync(c.walPath), pageSize);
      const frames = (copy.shadowSize - 32) / (24 + pageSize);
      if (copy.shadowSize > walSize) reason = 'wal truncated by another process';
      else if (copy.diverged) reason = 'wal overwritten by another process';
      else if (committed !== undefined && !copy.capped && committed !== frames) {
        reason = `the shadow wal holds ${frames} frames of the wal's cycle, sqlite has committed ${committed}`;
      } else {
        cursor.set({ generation, index, header: real, size: copy.shadowSize, capped: copy.capped }, true);
        cursor.relockLocked(db);
        return true;
      }
    } else {
      const ended = oldCycleEndedAtShadow(c.walPath, shadowPath, real, shadow);
      if (ended === 'yes') {
        // Stopped right after a WAL restart, before the next shadow index was made (Litestream starts a
        // new generation here): the WAL is the very next cycle and the old one provably ended where the
        // shadow ends, so nothing was lost and the generation continues with a new index.
        log.info('init: wal restarted while stopped; continuing the generation', { db: c.dbPath, generation });
        fsyncFileSync(shadowPath); // the old index is final
        cursor.startIndexLocked(db, generation, index + 1, real);
        return true;
      }
      if (ended === 'unknown' && plan.seqWrite && seqWriteBeganCycle(c.walPath, shadowPath, plan.seqWrite, shadow, real)) {
        // Killed inside our checkpoint's seq write or right after it, before its restart was noted: the
        // WAL's cycle began with that very write, so it began while our read transaction still held off
        // every backfill, and the old cycle ended where the shadow ends (seq-write-note.ts).
        log.info("init: wal restarted by the replicator's own checkpoint just before it stopped; continuing the generation", {
          db: c.dbPath,
          generation,
        });
        fsyncFileSync(shadowPath);
        cursor.startIndexLocked(db, generation, index + 1, real);
        return true;
      }
      reason = 'wal header changed while stopped (the wal was restarted or truncated by another process)';
      if (plan.seqWrite) reason += '; the seq write announced before the stop did not begin its cycle';
    }
    log.warn('init: cannot determine last wal position, clearing generation', { db: c.dbPath, reason });
  }
  cursor.newGenerationLocked(db, reason);
  return true;
}

const UNPUBLISHED_RESTART =
  "sqlite restarted the wal and its header was never written (an application's writer stopped in between) while the file still holds frames of the cycle before: whether they were committed cannot be known";

/**
 * SQLite's wal-index names a new, empty cycle (a writer restarted the WAL: nothing committed) whose
 * header is not in the file yet, while the file still holds frames of the cycle its header (`real`)
 * names. Those frames may have been committed, checkpointed and restarted over while we were stopped:
 * then SQLite's count (0) is not of them, and going on from the last index, starting the next one from
 * this cycle, or continuing a restored generation would leave them out of the history. (While the
 * replicator runs, its read transaction keeps this from happening; settleLocked has its own check.)
 *
 * Not the same as a writer killed after writing a new cycle's header and first frames but before
 * publishing them (our own seq write, when the replicator is killed inside it): the wal-index names an
 * empty cycle then too, and the file holds frames of it, never committed. The salts tell the two apart:
 * a restart stores the new cycle's salts in the wal-index before the header goes into the file, so only
 * in the first case do they differ from the file's. (A writer whose connection never restarted the WAL
 * picks fresh salts for a cycle's first frame and publishes them only with its commit: killed before,
 * its frames differ too, and start a new generation, which is safe.) A wal-index header that cannot be
 * read counts as different.
 */
function unpublishedRestart(db: ShipperDb, walPath: string, real: Buffer): boolean {
  const idx = db.walIndex();
  // Not nBackfill too: a restart stores mxFrame 0 before nBackfill 0, and a writer can stop in between.
  if (idx === undefined || idx.committed !== 0 || walFirstFrameOf(walPath, real) === undefined) return false;
  const hdr = db.walIndexHeader();
  return !(hdr?.committed === 0 && hdr.salts.equals(real.subarray(16, 24)));
}

function continueRestoredLocked(c: StartContext, candidate: RestoreCandidate, real: Buffer): void {
  const { marker } = candidate;
  c.meta.removeGenerationDirSync(marker.generation);
  writeContinuedFromSync(c.meta, { generation: marker.generation, index: marker.index, offset: marker.offset });
  c.cursor.startIndexLocked(c.db, marker.generation, marker.index + 1, real);
  c.meta.writeGenerationSync(marker.generation);
  c.restore.continued(candidate, marker.index + 1);
}
