/**
 * The note our checkpoint leaves just before its seq write, so that a replicator killed inside that write
 * (or right after it, before the restart is noted as the next index) can still go on with its generation.
 *
 * Why it is needed: after our checkpoint backfilled every frame, our seq write is what restarts the WAL.
 * Killed there, start-up finds the WAL on the next cycle and must prove that the old cycle ended where the
 * shadow ends. oldCycleEndedAtShadow proves it from a frame of an older cycle past the shadow's end; when
 * the old cycle was the longest so far the file ends right there, the end of a file proves nothing, and
 * the generation ended (safe — a full snapshot — but needless, and a kill right after an application's last
 * writes lands there often, as that is when we checkpoint).
 *
 * What proves it instead: the new cycle's first frame is the very seq write the note announced (its page,
 * the value it sets, a valid frame of that cycle). Our process wrote that frame, so the cycle began while
 * it was alive and held the read transaction the checkpoint had just retaken, in slot 0, on a fully
 * backfilled WAL whose every frame was in the shadow (the note is only written when that holds, see
 * ShadowCursor.noteSeqWriteLocked). A slot-0 reader blocks every backfill, so no frame can have been added
 * to the old cycle and backfilled before the restart: it ended where the shadow ends.
 *
 * "Our process wrote that frame" rests on the value: nothing but the replicator writes `_litestream_seq`,
 * committed values only grow, the note is removed when its write fails, and start-up takes the note away
 * before its own seq write (a WAL without a header) could write the announced value again. Another
 * replicator run in between on the same database (Litestream, whose seq write counts the same way) could
 * write that value too; so the note only settles what the file leaves open (oldCycleEndedAtShadow's
 * 'unknown'), never a frame of the old cycle found past the shadow's end.
 *
 * Covered: a kill after the seq write's frame is in the file (published or not) and before the restart is
 * noted. Not covered by the note: a kill between the new header's write (and its fsync) and the frame's,
 * when the new cycle has no frame at all; oldCycleEndedAtShadow settles that one from the file.
 *
 * Not fsynced: a process killed keeps what it wrote in the page cache; after a power cut a missing, torn
 * or older note matches nothing, and start-up begins a new generation, as it would without the note.
 */
import { closeSync, fsyncSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { errnoCode } from '../errors.js';
import { applyPermissionsToFdSync } from '../internal/file-permissions.js';
import type { MetaDir } from '../meta/meta-dir.js';
import { leafRowIntegers } from '../sqlite/table-leaf.js';
import { WAL_FRAME_HEADER_SIZE, frameAlign, parseWalFrameHeader, parseWalHeader } from '../sqlite/wal-format.js';
import { isNextCycle, walFirstFrameOf } from './shadow-wal.js';

export interface SeqWriteNote {
  generation: string;
  /** The shadow index whose cycle the seq write may end. */
  index: number;
  /** That index's shadow size when the note was written: where the old cycle ends. */
  shadowSize: number;
  /** The page the seq write changes (`_litestream_seq`'s). */
  page: number;
  /** The value it sets. */
  seq: bigint;
}

/** Writes the note (synchronously: under the write lock, just before the seq write). */
export function writeSeqWriteNote(meta: MetaDir, note: SeqWriteNote): void {
  const body = Buffer.from(JSON.stringify({ ...note, seq: note.seq.toString() }));
  const perms = meta.permissions;
  const fd = openSync(meta.seqWriteNotePath(), 'w', perms.fileMode);
  try {
    applyPermissionsToFdSync(fd, perms, 'file');
    let off = 0;
    while (off < body.length) off += writeSync(fd, body, off, body.length - off);
  } finally {
    closeSync(fd);
  }
}

/** Removes the note (its seq write did not commit, or no restart may be vouched for). */
export function dropSeqWriteNote(meta: MetaDir): void {
  try {
    unlinkSync(meta.seqWriteNotePath());
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}

/**
 * At start-up, before anything of ours can write the seq row: the note, read and removed for good (the
 * removal fsynced, so a power cut cannot bring it back next to a value this start-up writes). Undefined
 * when there is none or it cannot be read whole.
 */
export function takeSeqWriteNote(meta: MetaDir): SeqWriteNote | undefined {
  const path = meta.seqWriteNotePath();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  unlinkSync(path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  try {
    const j = JSON.parse(text) as Record<string, unknown>;
    const { generation, index, shadowSize, page, seq } = j;
    if (
      typeof generation !== 'string' ||
      !Number.isSafeInteger(index) ||
      !Number.isSafeInteger(shadowSize) ||
      !Number.isSafeInteger(page) ||
      typeof seq !== 'string' ||
      !/^-?\d+$/.test(seq)
    )
      return undefined;
    return { generation, index: index as number, shadowSize: shadowSize as number, page: page as number, seq: BigInt(seq) };
  } catch {
    return undefined; // torn (killed while writing it): proves nothing
  }
}

/**
 * Whether the WAL's cycle (header `real`) began with the seq write `note` announced, right after the
 * shadow's cycle (header `shadow`, its file `shadowPath`): the next cycle (salt-1 + 1, same
 * page size), the shadow where the note left it, and the WAL's first frame a valid frame of that cycle
 * (salts, checksum chain from the header), a commit of the seq page holding the announced value.
 */
export function seqWriteBeganCycle(walPath: string, shadowPath: string, note: SeqWriteNote, shadow: Buffer, real: Buffer): boolean {
  let frame: Buffer | undefined;
  try {
    const old = parseWalHeader(shadow);
    if (!isNextCycle(old, parseWalHeader(real))) return false;
    if (frameAlign(statSync(shadowPath).size, old.pageSize) !== note.shadowSize) return false;
    frame = walFirstFrameOf(walPath, real);
  } catch {
    return false;
  }
  if (!frame) return false;
  const fh = parseWalFrameHeader(frame);
  if (fh.pgno !== note.page || fh.commit === 0) return false;
  const row = leafRowIntegers(frame.subarray(WAL_FRAME_HEADER_SIZE), fh.pgno, 1n);
  return row !== undefined && row.length === 2 && row[1] === note.seq;
}
