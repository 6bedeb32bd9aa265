/**
 * Continuing a restored generation (opt-in: `continue-after-restore`; docs/config.md, "After a restore").
 * Litestream starts a new generation whenever none exists, so it always does after a restore. A restore
 * of a generation's latest state leaves a marker (restore-marker.ts); with it the shipper's first start
 * can continue that generation at the next index — without a snapshot — when continuity provably holds:
 * - every replica ends exactly at the restored position (nobody wrote to the generation since);
 * - the database file is byte-identical to the restored one: then the replica's state at that position
 *   is the database file, and the WAL's current cycle holds everything written since (a checkpoint that
 *   changed the file, including the one SQLite runs when the last connection closes, may have moved
 *   writes out of the WAL, so it breaks continuity);
 * - the WAL did not restart between reading its header and hashing the database: the header is read
 *   before the hash and again under the write lock, where the shadow starts.
 * Frames the current cycle backfills meanwhile are harmless: they are also in the WAL we copy from.
 */
import { createHash } from 'node:crypto';
import { describeError } from '../errors.js';
import { MAX_INDEX } from '../layout.js';
import type { Logger } from '../logger.js';
import type { Pos } from '../pos.js';
import type { DatabaseFile } from './database-file.js';
import type { MetaDir } from '../meta/meta-dir.js';
import { markerPos, readContinuedFrom, readRestoreMarker, removeRestoreMarker, type RestoreMarker } from '../meta/restore-marker.js';
import { readWalHeaderBytesSync } from './shadow-wal.js';

/**
 * Asked before a generation is continued after a restore: undefined when this replica ends exactly at the
 * restored position (nobody wrote to the generation since), else why continuity does not hold.
 */
export type RestoreCheck = (marker: RestoreMarker) => Promise<string | undefined>;

/** A restore that passed every check that can be made without the write lock. */
export interface RestoreCandidate {
  marker: RestoreMarker;
  /** The WAL header when the database was hashed; must be unchanged under the write lock. */
  walHeader: Buffer;
}

/** What the checks without the lock found: a candidate to continue, or why the restore is not continued. */
export type PreparedRestore = { ok: true; candidate: RestoreCandidate } | { ok: false; reason: string };

export class RestoreContinuation {
  private readonly checks = new Map<string, RestoreCheck>();
  /** What load() found, for the first start that has no generation. */
  private pending: { ok: true; marker: RestoreMarker } | { ok: false; reason: string } | undefined;
  /** In a generation continued after a restore: the replica position it resumed from. */
  continuedFrom: Pos | undefined;

  constructor(
    private readonly meta: MetaDir,
    private readonly log: Logger,
    private readonly dbPath: string,
    private readonly enabled: boolean,
  ) {}

  addCheck(name: string, check: RestoreCheck): void {
    this.checks.set(name, check);
  }

  /** Where the generation at `pos` was continued from after a restore; undefined for any other generation. */
  restoredFrom(pos: Pos | undefined): Pos | undefined {
    const from = this.continuedFrom;
    return pos && from?.generation === pos.generation ? from : undefined;
  }

  /** Reads the marker (and, for a continuing generation, where it was continued from). */
  async load(generation: string | undefined): Promise<void> {
    this.pending = undefined;
    if (generation !== undefined) {
      this.continuedFrom = await readContinuedFrom(this.meta, generation);
      if (await readRestoreMarker(this.meta).catch(() => true)) {
        // A marker found while a generation continues anyway is stale.
        this.log.info('restore marker ignored: the current generation continues', { db: this.dbPath, generation });
        await this.dropMarker();
      }
      return;
    }
    try {
      const marker = await readRestoreMarker(this.meta);
      if (marker && !this.enabled) {
        this.pending = { ok: false, reason: `restore of generation ${marker.generation} not continued: continue-after-restore is off` };
        await this.dropMarker();
      } else {
        this.pending = marker ? { ok: true, marker } : { ok: false, reason: 'no restore marker' };
      }
    } catch (err) {
      this.pending = { ok: false, reason: describeError(err) };
    }
  }

  /**
   * For a start with no generation: the checks that need no lock (replica positions, the database's
   * digest, read through the shipper's descriptor). A reason when the restore cannot be continued.
   */
  async prepare(file: DatabaseFile, walPath: string): Promise<PreparedRestore> {
    const pending = this.pending;
    this.pending = undefined;
    if (!pending) return { ok: false, reason: 'no restore marker' };
    if (!pending.ok) return pending;
    const { marker } = pending;
    try {
      if (marker.index + 1 > MAX_INDEX) return this.refuse(marker, 'max index exceeded');
      if (this.checks.size === 0) return this.refuse(marker, 'no replica to confirm the restored position');
      for (const [name, check] of this.checks) {
        const refused = await check(marker).catch((err: unknown) => `replica ${name} could not be checked: ${describeError(err)}`);
        if (refused !== undefined) return this.refuse(marker, refused);
      }
      const walHeader = readWalHeaderBytesSync(walPath);
      if (!walHeader) return this.refuse(marker, 'no wal header');
      const { size, sha256 } = await fileDigest(file);
      if (size !== marker.size || sha256 !== marker.sha256) return this.refuse(marker, 'database changed since the restore');
      return { ok: true, candidate: { marker, walHeader } };
    } catch (err) {
      return this.refuse(marker, describeError(err));
    }
  }

  /** Under the write lock: why the candidate cannot be continued now, or undefined. */
  lockedCheck(candidate: RestoreCandidate, walPath: string): string | undefined {
    const now = readWalHeaderBytesSync(walPath);
    return now && now.equals(candidate.walHeader)
      ? undefined
      : `restore of generation ${candidate.marker.generation} not continued: wal restarted while checking the restore`;
  }

  continued(candidate: RestoreCandidate, index: number): void {
    const { marker } = candidate;
    this.continuedFrom = markerPos(marker);
    this.log.info(`continuing generation ${marker.generation} after restore`, {
      db: this.dbPath,
      generation: marker.generation,
      index: index.toString(16).padStart(8, '0'),
      restored: `${marker.index.toString(16).padStart(8, '0')}:${marker.offset}`,
      replica: marker.location,
    });
  }

  /** Best effort: a marker left behind is dropped at the next start, which finds a generation. */
  async dropMarker(): Promise<void> {
    await removeRestoreMarker(this.meta).catch((err: unknown) =>
      this.log.warn('cannot remove the restore marker', { path: this.meta.restoreMarkerPath(), error: describeError(err) }),
    );
  }

  private refuse(marker: RestoreMarker, why: string): PreparedRestore {
    return { ok: false, reason: `restore of generation ${marker.generation} not continued: ${why}` };
  }
}

/** Size and SHA-256 of the database file, read through the shipper's descriptor (never a new one). */
async function fileDigest(file: DatabaseFile): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of file.chunks()) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { size, sha256: hash.digest('hex') };
}
