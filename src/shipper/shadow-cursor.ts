/**
 * Where the shipper stands — the current shadow WAL file and the WAL cycle it follows — and the moves
 * that change it, each made under SQLite's write lock: copying new frames, following a WAL restart with
 * the next index, starting a generation. Also the position replicas see, and how much of it is durable.
 */
import { describeError, errnoCode, ReplicateError } from '../errors.js';
import { MAX_INDEX, formatHex8 } from '../layout.js';
import type { Logger } from '../logger.js';
import type { Pos } from '../pos.js';
import { parseWalHeader } from '../sqlite/wal-format.js';
import type { ShipperDb } from './db-connection.js';
import type { MetaDir } from '../meta/meta-dir.js';
import { statSync } from 'node:fs';
import { copyToShadow, type CopyResult } from './shadow-copy.js';
import { fsyncFileSync, initShadow, readWalHeaderBytesSync } from './shadow-wal.js';
import { dropSeqWriteNote, writeSeqWriteNote } from './seq-write-note.js';

/** The current shadow file and the WAL cycle it follows. */
export interface Current {
  generation: string;
  index: number;
  /** The WAL header this shadow index follows (its first 32 bytes). */
  header: Buffer;
  /** Committed size copied so far. */
  size: number;
  /** A commit past `maxFileBytes` was not copied: the generation cannot continue past a restart. */
  capped: boolean;
}

/** Why a generation ends when the shadow holds frames the WAL no longer has. */
export const DIVERGED =
  'wal overwritten by another process: the shadow holds frames SQLite discarded (a writer killed after writing its commit frame, before publishing it)';

export interface CursorEvents {
  position(pos: Pos): void;
  generation(generation: string, reason: string): void;
}

export class ShadowCursor {
  private cur: Current | undefined;
  private position: Pos | undefined;
  private durable: Pos | undefined;
  private cappedLogged = false;
  /** The WAL file (inode) the database was opened with; a restart of another file is not followed. */
  walIno: bigint | undefined;
  /** Bytes written to shadow WAL files so far (headers included): Litestream's litestream_total_wal_bytes. */
  appendedBytes = 0;
  /** Frames of the current index when the read transaction was last (re)taken on its cycle. */
  private relocked: { generation: string; index: number; frames: number } | undefined;
  private pathMemo: { generation: string; index: number; path: string } | undefined;
  private frameBytesOf: { header: Buffer; bytes: number } | undefined;

  constructor(
    private readonly meta: MetaDir,
    private readonly walPath: string,
    private readonly dbPath: string,
    /** Largest shadow file: what a v0.3 segment name (8 hex digits of offset) can address. */
    readonly maxFileBytes: number,
    private readonly log: Logger,
    private readonly events: CursorEvents,
  ) {}

  get current(): Current | undefined {
    return this.cur;
  }

  pos(): Pos | undefined {
    return this.position;
  }

  /** Forgets everything (the database is being reopened). */
  reset(): void {
    this.cur = undefined;
    this.relocked = undefined;
    this.walIno = undefined;
  }

  shadowPath(cur: Current = this.cur!): string {
    // Every sync asks for it (a path joined from four parts, each time): kept for the index it names.
    const p = this.pathMemo;
    if (p && p.generation === cur.generation && p.index === cur.index) return p.path;
    const path = this.meta.shadowWalPath(cur.generation, cur.index);
    this.pathMemo = { generation: cur.generation, index: cur.index, path };
    return path;
  }

  set(cur: Current, durable: boolean): void {
    const prev = this.cur;
    this.appendedBytes +=
      prev && prev.generation === cur.generation && prev.index === cur.index ? Math.max(0, cur.size - prev.size) : cur.size;
    this.cur = cur;
    if (cur.capped && !this.cappedLogged) {
      this.cappedLogged = true;
      this.log.error(
        'wal cycle reached the largest offset a v0.3 segment name can hold; not copied further until the wal restarts (a long reader may keep it from restarting); the generation then ends',
        {
          db: this.dbPath,
          generation: cur.generation,
          index: formatHex8(cur.index),
          limit: this.maxFileBytes,
        },
      );
    }
    const pos: Pos = { generation: cur.generation, index: cur.index, offset: cur.size };
    const old = this.position;
    this.position = pos;
    if (durable) this.durable = pos;
    // Never from inside the write lock: a listener of the embedding application may write.
    if (!old || old.generation !== pos.generation || old.index !== pos.index || old.offset !== pos.offset)
      queueMicrotask(() => this.events.position(pos));
  }

  /**
   * Copies the WAL's new committed frames into the current shadow file, which must follow the WAL's
   * current cycle (ENOENT: the file is gone), up to `maxFrames` (SQLite's commit point). `diverged` in
   * the result: the shadow's last frame is no longer in the WAL — it holds frames SQLite discarded — and
   * the generation cannot go on.
   */
  copy(fsync: boolean, maxFrames: number | undefined): CopyResult {
    const cur = this.cur!;
    // Idle databases: the shadow as it stands was fsynced already, so an empty copy needs no fsync.
    const copy = copyToShadow(this.walPath, this.shadowPath(cur), {
      fsync,
      durableAlready: this.durableToEnd(),
      maxSize: this.maxFileBytes,
      verifyLastFrame: true,
      maxFrames,
    });
    this.set({ ...cur, size: copy.shadowSize, capped: cur.capped || copy.capped }, fsync);
    return copy;
  }

  /** The whole current shadow file, as it stands, was fsynced. */
  private durableToEnd(): boolean {
    const d = this.durable;
    const cur = this.cur!;
    return d !== undefined && d.generation === cur.generation && d.index === cur.index && d.offset === cur.size;
  }

  /**
   * The copy of a sync, without the write lock: up to SQLite's commit point as read between two reads of
   * the header. Undefined when the WAL is no longer the cycle the shadow follows (a restart to follow
   * under the lock).
   */
  copyUnlocked(db: ShipperDb, fsync: boolean, header?: Buffer): CopyResult | undefined {
    const cur = this.cur!;
    const committed = db.committedFramesOf(cur.header, header);
    if (committed === undefined) return undefined;
    // Nothing new (an idle database): SQLite's committed count for this very cycle (same header, read
    // before and after it) is what the shadow holds, and frames of a cycle are never rewritten, so the
    // copy would read both files to append nothing. Skipped, unless a durable sync still needs its fsync.
    if (committed === this.frames() && (!fsync || this.durableToEnd()))
      return { shadowSize: cur.size, appended: 0, capped: false, diverged: false };
    return this.copy(fsync, committed);
  }

  /**
   * Whether the WAL holds a frame of the shadow's cycle just past what is committed: a transaction being
   * written. A commit writes its frames (a file event), then fsyncs them, and only then publishes them in
   * the wal-index, which is shared memory and makes no file event; a sync that the write woke can run
   * in between and find nothing committed yet. Also true for the frames a writer killed mid-commit left
   * (SQLite discards those), so whoever asks again must back off.
   */
  frameInProgress(db: ShipperDb): boolean {
    const cur = this.cur;
    if (!cur) return false;
    const salts = db.wal.frameSalts(cur.size);
    return salts !== undefined && salts.equals(cur.header.subarray(16, 24));
  }

  /**
   * Under the write lock (nothing commits, the WAL cannot restart): brings the shadow to exactly what
   * SQLite has committed in the WAL's cycle. Follows a restart; starts a new generation when the shadow
   * holds frames SQLite does not have committed (discarded ones) or cannot be given all it has. True when
   * the current index goes on, settled.
   */
  settleLocked(db: ShipperDb): boolean {
    const cur = this.cur!;
    const real = readWalHeaderBytesSync(this.walPath);
    if (!real) return false; // emptied by a TRUNCATE: the next sync gives it a header first
    if (!real.equals(cur.header)) {
      this.followRestartLocked(db, real);
      return false;
    }
    const index = db.walIndex();
    if (!index) return false; // no wal-index to compare with: nothing is vouched for
    // The wal-index already names a new cycle whose header is not in the file yet (a restarting writer
    // between the two, or killed there): a restart to follow once the header is written.
    if (index.committed === 0 && index.backfilled === 0 && this.frames() > 0) return false;
    const committed = index.committed;
    const copy = this.copy(true, committed);
    if (copy.diverged) {
      this.newGenerationLocked(db, DIVERGED);
      return false;
    }
    if (!this.cur!.capped && this.frames() !== committed) {
      this.newGenerationLocked(db, `the shadow wal holds ${this.frames()} frames of the wal's cycle, sqlite has committed ${committed}`);
      return false;
    }
    return true;
  }

  /** Moves the read transaction to the WAL's end, after a settle (the copy it vouches for), and notes where. */
  relockLocked(db: ShipperDb): void {
    db.relockRead();
    const cur = this.cur!;
    this.relocked = { generation: cur.generation, index: cur.index, frames: this.frames() };
  }

  /** Frames of the current cycle in the shadow file. */
  frames(): number {
    const cur = this.cur!;
    // The header is parsed (and its checksum checked) once per index, not at every sync.
    let memo = this.frameBytesOf;
    if (memo?.header !== cur.header) this.frameBytesOf = memo = { header: cur.header, bytes: 24 + parseWalHeader(cur.header).pageSize };
    return (cur.size - 32) / memo.bytes;
  }

  /**
   * The part of the position that is durable locally (fsynced), after making it so: replicas upload only
   * this, so a power cut can never leave a replica holding bytes the local shadow WAL lost.
   */
  async durablePos(): Promise<Pos | undefined> {
    const target = this.position;
    if (!target || atOrPast(this.durable, target)) return this.durable;
    await this.meta.fsyncShadow(target.generation, target.index).catch((err: unknown) => {
      if (errnoCode(err) !== 'ENOENT') throw err; // a generation that ended meanwhile: nothing to make durable
    });
    if (!atOrPast(this.durable, target) && this.position?.generation === target.generation) this.durable = target;
    return this.durable;
  }

  /**
   * Why the WAL's restart to the cycle whose header is `real` cannot continue the generation, or undefined
   * when the old cycle provably ended where the shadow ends: the read transaction was ours (taken under
   * the write lock after a full copy) and still is, nothing was added to the index since (a commit there
   * makes a later restart impossible while we hold the read transaction), and the WAL file is the one we
   * opened. Needs no lock: it is about our own state. (Our read transaction blocks every backfill, so no
   * second restart ends a cycle with frames; `real` itself can still be rewritten when its cycle's first
   * frames were never committed — a writer killed, a spill rolled back — and the next writer writes the
   * header again. The locked follow reads it again; start-up after a crash then finds a header the noted
   * index does not have, and decides as for any restart it did not see.)
   */
  private restartBreak(db: ShipperDb, real: Buffer): string | undefined {
    const cur = this.cur!;
    const old = parseWalHeader(cur.header);
    const next = parseWalHeader(real);
    const state = this.stateBreak(db);
    if (state !== undefined) return state;
    if (this.walIno !== undefined && walInodeSync(this.walPath) !== this.walIno) return 'wal file replaced by another process';
    if (next.pageSize !== old.pageSize) return `page size changed (${old.pageSize} -> ${next.pageSize})`;
    if (cur.index + 1 > MAX_INDEX) return 'max index exceeded';
    return undefined;
  }

  /** The part of restartBreak about our own state alone (see there); also what noteSeqWriteLocked asks. */
  private stateBreak(db: ShipperDb): string | undefined {
    const cur = this.cur!;
    const at = this.relocked;
    if (cur.capped) return `wal cycle grew past ${this.maxFileBytes} bytes, more than v0.3 segment names can address`;
    if (!db.readLockTrusted) return 'wal restarted while the read lock could not be trusted (after an error)';
    if (!at || at.generation !== cur.generation || at.index !== cur.index || at.frames !== this.frames())
      return 'wal restarted after frames were added to its cycle since our read lock was taken (it cannot have ended where the shadow ends)';
    return undefined;
  }

  /**
   * A restart seen before the write lock to follow it is held (an application's write may keep it for a
   * while): when the generation would go on, the next index's shadow file is written now, durably, with
   * the new cycle's header alone. The proof that the old cycle ended where the shadow ends is our read
   * transaction, and it dies with the process: after a crash here, a writer can add frames to an old
   * cycle and restart it (behind an application reader), and a new cycle that outgrows the old one
   * overwrites what start-up could check instead (cycleFollowsShadow), so start-up would begin a new
   * generation. With this file it finds the WAL on the last index's cycle and goes on. The follow under
   * the lock replaces the file with its full copy.
   */
  noteRestartUnlocked(db: ShipperDb): void {
    const cur = this.cur;
    if (!cur) return;
    const real = readWalHeaderBytesSync(this.walPath);
    if (!real || real.equals(cur.header)) return;
    try {
      if (this.restartBreak(db, real) !== undefined) return;
    } catch {
      return; // a header read as it was written (bad checksum): the follow under the lock reads it again
    }
    if (this.meta.shadowHeaderSync(cur.generation, cur.index + 1)?.equals(real)) return;
    // The old index is final before the next one exists (start-up reads the last one as the current).
    if (!this.durableToEnd()) fsyncFileSync(this.shadowPath(cur));
    initShadow(this.walPath, this.meta.shadowWalPath(cur.generation, cur.index + 1), real, { perms: this.meta.permissions, maxFrames: 0 });
    db.step('restart-noted');
    this.log.debug('wal restart noted for the next index', {
      db: this.dbPath,
      generation: cur.generation,
      index: formatHex8(cur.index + 1),
    });
  }

  /**
   * Just before our checkpoint's seq write, under the write lock: the note that lets start-up go on with
   * the generation when we are killed inside that write, or after it before its restart is noted
   * (seq-write-note.ts). Written only when that write will begin the next cycle (`begins`: the WAL is
   * still the fully backfilled old one) and a restart now would continue the generation by restartBreak's
   * conditions on our own state (the read transaction ours and trusted, nothing added since it was
   * taken, the index not the last one); else an older note is removed. A note left behind once its write
   * is made matches nothing later (its value is then in the database, and values only grow). Best
   * effort: the note only spares a new generation, so failing to write it must not fail the checkpoint.
   */
  noteSeqWriteLocked(db: ShipperDb, begins: boolean): void {
    const cur = this.cur;
    const vouched = begins && cur !== undefined && cur.index + 1 <= MAX_INDEX && this.stateBreak(db) === undefined;
    const target = vouched ? db.seqWriteTarget() : undefined;
    try {
      if (cur && target)
        writeSeqWriteNote(this.meta, {
          generation: cur.generation,
          index: cur.index,
          shadowSize: cur.size,
          page: target.page,
          seq: target.seq,
        });
      else dropSeqWriteNote(this.meta);
    } catch (err) {
      this.log.debug('seq write note not written', { db: this.dbPath, error: describeError(err) });
      this.dropSeqWriteNote();
    }
  }

  /** The seq write the note announced did not commit: the note goes (its value may be written again). Best effort. */
  dropSeqWriteNote(): void {
    try {
      dropSeqWriteNote(this.meta);
    } catch (err) {
      this.log.warn('seq write note could not be removed', { db: this.dbPath, error: describeError(err) });
    }
  }

  /**
   * Under the write lock, the WAL having restarted (`real`, read under that lock, is its new header): the
   * new cycle becomes the next index when the old one provably ended where the shadow ends (restartBreak),
   * else the generation ends.
   */
  private followRestartLocked(db: ShipperDb, real: Buffer): void {
    const cur = this.cur!;
    const reason = this.restartBreak(db, real);
    // Not salt-1 + 1: a writer whose connection never restarted the WAL itself writes a new cycle's first
    // frame with fresh random salts (after an application's TRUNCATE, say). With the read transaction ours
    // and nothing added since, no restart can lose a frame: ours blocks every backfill, so only the first
    // restart can end a cycle with frames, and it ends it where the shadow ends.
    const previous = parseWalHeader(cur.header).salt1;
    const salt1 = parseWalHeader(real).salt1;
    if (!reason && salt1 !== (previous + 1) >>> 0) this.log.debug('wal restarted with new salts', { db: this.dbPath, salt1, previous });
    // The old index is final: durable before replicas see the next one (they upload it to its end then).
    // Usually it is already: the settle before our checkpoint fsynced it to its end.
    if (!this.durableToEnd()) fsyncFileSync(this.shadowPath(cur));
    if (reason) this.newGenerationLocked(db, reason);
    else this.startIndexLocked(db, cur.generation, cur.index + 1, real);
  }

  /** Starts shadow index `index` from the WAL's current cycle and moves the read lock there. */
  startIndexLocked(db: ShipperDb, generation: string, index: number, header: Buffer): void {
    this.meta.createGenerationDirSync(generation);
    this.cappedLogged = false;
    const copy = initShadow(this.walPath, this.meta.shadowWalPath(generation, index), header, {
      perms: this.meta.permissions,
      maxSize: this.maxFileBytes,
      maxFrames: readWalHeaderBytesSync(this.walPath)?.equals(header) ? db.committedFrames() : 0,
    });
    this.set({ generation, index, header, size: copy.shadowSize, capped: copy.capped }, true);
    this.relockLocked(db);
    this.log.debug('new shadow wal index', { db: this.dbPath, generation, index: formatHex8(index) });
  }

  /** A new generation from the WAL's current cycle, under the write lock (its shadow starts at index 0). */
  newGenerationLocked(db: ShipperDb, reason: string): void {
    const header = readWalHeaderBytesSync(this.walPath);
    if (!header) throw new ReplicateError('IO', `starting a generation of ${this.dbPath}: ${this.walPath} has no WAL header`);
    const generation = this.meta.newGenerationNameSync();
    this.startIndexLocked(db, generation, 0, header);
    this.meta.writeGenerationSync(generation);
    this.log.info('new generation', { db: this.dbPath, generation, reason });
    queueMicrotask(() => this.events.generation(generation, reason));
  }
}

/** Whether `a` is at or past `b` in the same generation (positions of two generations do not compare). */
function atOrPast(a: Pos | undefined, b: Pos): boolean {
  return a !== undefined && a.generation === b.generation && (a.index > b.index || (a.index === b.index && a.offset >= b.offset));
}

/** The WAL file's inode (undefined when it is missing). */
export function walInodeSync(path: string): bigint | undefined {
  try {
    return statSync(path, { bigint: true }).ino;
  } catch {
    return undefined;
  }
}
