/**
 * The restore marker: a small JSON file a restore leaves in the restored database's meta directory
 * (`.<db>-litestream/restored-from.json`, a name Litestream ignores) so that the next `replicate` can
 * continue the restored generation instead of starting a new one.
 *
 * It records what is needed to prove continuity later: the generation and the replica's end position
 * at the restore (the position the replica's own position recovery computes: the end of the last WAL
 * segment applied), and the size and SHA-256 of the restored database file. If the database file is
 * still byte-identical when replication starts, the replica's state at that position *is* the database
 * file, and the current WAL cycle (read from its header on) is exactly what happened since.
 *
 * Beside the meta directory's layout (meta-dir.ts), below both sides: restore writes the marker,
 * the shipper reads it, continues the generation and records that it did.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { errnoCode, ReplicateError } from '../errors.js';
import { writeFileAtomic, writeFileAtomicSync } from '../internal/atomic-file.js';
import { isGenerationName } from '../layout.js';
import type { Pos } from '../pos.js';
import type { MetaDir } from './meta-dir.js';

export const RESTORE_MARKER_VERSION = 1;

export interface RestoreMarker {
  readonly version: number;
  readonly generation: string;
  /** The replica's end position when restored: the last WAL index applied and the byte offset it ends at. */
  readonly index: number;
  readonly offset: number;
  /** Name and location (never with secrets) of the replica restored from; for the log. */
  readonly replica: string;
  readonly location: string;
  /** The restored database file as moved into place. */
  readonly size: number;
  readonly sha256: string;
  readonly restoredAt: string;
}

export function markerPos(m: RestoreMarker): Pos {
  return { generation: m.generation, index: m.index, offset: m.offset };
}

/** Size and SHA-256 of a file, streamed (a database can be far larger than memory). */
export async function fileDigest(path: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

export async function writeRestoreMarker(meta: MetaDir, marker: RestoreMarker): Promise<void> {
  await writeFileAtomic(meta.restoreMarkerPath(), [Buffer.from(`${JSON.stringify(marker, null, 2)}\n`)], { permissions: meta.permissions });
}

/**
 * The marker, or undefined when there is none. A marker that cannot be parsed is an error (INVALID_ARGUMENT):
 * the caller treats it as "no usable marker" and says so.
 */
export async function readRestoreMarker(meta: MetaDir): Promise<RestoreMarker | undefined> {
  let text: string;
  try {
    text = await readFile(meta.restoreMarkerPath(), 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new ReplicateError('IO', `reading restore marker ${meta.restoreMarkerPath()}: ${(err as Error).message}`, { cause: err });
  }
  let m: Partial<RestoreMarker>;
  try {
    m = JSON.parse(text) as Partial<RestoreMarker>;
  } catch (err) {
    throw new ReplicateError('INVALID_ARGUMENT', `restore marker ${meta.restoreMarkerPath()} is not JSON`, { cause: err });
  }
  const int = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (
    m.version !== RESTORE_MARKER_VERSION ||
    typeof m.generation !== 'string' ||
    !isGenerationName(m.generation) ||
    !int(m.index) ||
    !int(m.offset) ||
    !int(m.size) ||
    typeof m.sha256 !== 'string' ||
    !/^[0-9a-f]{64}$/.test(m.sha256)
  ) {
    throw new ReplicateError(
      'INVALID_ARGUMENT',
      `restore marker ${meta.restoreMarkerPath()} is not a version ${RESTORE_MARKER_VERSION} marker`,
    );
  }
  return { replica: '', location: '', restoredAt: '', ...m } as RestoreMarker;
}

export async function removeRestoreMarker(meta: MetaDir): Promise<void> {
  await rm(meta.restoreMarkerPath(), { force: true });
}

/**
 * Kept in the continued generation's directory for as long as it lives, so that a restarted replicator
 * still knows that the restored index has no shadow file and that a replica ending exactly there may
 * move on to the next index.
 */
export async function writeContinuedFrom(meta: MetaDir, pos: Pos): Promise<void> {
  const body = { generation: pos.generation, index: pos.index, offset: pos.offset };
  await writeFileAtomic(meta.continuedFromPath(pos.generation), [Buffer.from(`${JSON.stringify(body)}\n`)], {
    permissions: meta.permissions,
  });
}

/** The same, synchronously (while SQLite's write lock is held). */
export function writeContinuedFromSync(meta: MetaDir, pos: Pos): void {
  const body = { generation: pos.generation, index: pos.index, offset: pos.offset };
  writeFileAtomicSync(meta.continuedFromPath(pos.generation), Buffer.from(`${JSON.stringify(body)}\n`), { permissions: meta.permissions });
}

/** The position a generation was continued from after a restore; undefined if it was not (or unreadable). */
export async function readContinuedFrom(meta: MetaDir, generation: string): Promise<Pos | undefined> {
  try {
    const p = JSON.parse(await readFile(meta.continuedFromPath(generation), 'utf8')) as Partial<Pos>;
    if (p.generation !== generation || !Number.isSafeInteger(p.index) || !Number.isSafeInteger(p.offset)) return undefined;
    return { generation, index: p.index!, offset: p.offset! };
  } catch {
    return undefined;
  }
}
