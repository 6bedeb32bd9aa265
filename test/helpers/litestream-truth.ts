/**
 * Ground truth for restores of real Litestream replicas: after each committed write we wait (on log lines)
 * until Litestream has uploaded it, then record the source's user-content digest together with
 *   - `position`: a DB position covering the write, whose `index` is the WAL index holding its commit, and
 *   - `at`: a wall-clock moment strictly after the upload's CreatedAt and strictly before any upload that
 *     contains the next write, so `restore -timestamp at` must give exactly this state.
 *
 * Timing assumptions (measured on Linux 6.x, see the report of the harness):
 *   - file-replica CreatedAt = the object's mtime. The kernel stamps it from a coarse clock that may LAG real
 *     time by up to one jiffy (1-10 ms; ~4 ms observed) but never leads it. Log `time=` is Go's precise clock
 *     truncated to ms. Node's Date.now() reads the same CLOCK_REALTIME.
 *   - So we take `at` >= ceil(upload mtime) + SETTLE and >= the upload's log time + SETTLE, and start the
 *     next write only SETTLE after `at`: that write's objects are created after it, and their mtime is at
 *     worst one jiffy earlier than their real creation time, still > `at` (SETTLE = 25 ms >> 10 ms).
 *   - Writes are therefore >= 50 ms apart; a typical write+upload cycle takes 150-250 ms with
 *     monitor-interval 50ms and sync-interval 100ms.
 *   - Litestream's `-timestamp` only matches a generation whose [first object, last object] CreatedAt range
 *     contains it (spec B8). `at` of the LAST entry of a generation is after that generation's last object,
 *     so `finalize()` sets `timestamp` (the value to pass to -timestamp) to the exact upload mtime (RFC 3339
 *     with ns, inclusive bound) for those entries, and to `at` for the others.
 *   - The WAL index of a write: while a write is being recorded a second connection holds a read transaction
 *     begun BEFORE the commit. It keeps the new frames from being checkpointed, so SQLite cannot restart the
 *     WAL and Litestream cannot start a new index until the upload has been seen; the covering position's
 *     index is then exactly the index that holds the commit. (Litestream's checkpoint is merely deferred to
 *     the next sync, which is ordinary behaviour.) For entries recorded without a write (`record()`), the
 *     index is an upper bound of where the state became complete.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { logLineTime, mtimeNs, rfc3339Nano, type LitestreamReplicator, type LogPosition, type UploadEvent } from './litestream-process.js';
import { rowCount, userTableContent, type SqliteDb } from './litestream-source-db.js';

export const SETTLE_MS = 25;

export interface GroundTruthEntry {
  /** 0-based order of recording. */
  seq: number;
  label: string;
  generation: string;
  /** A DB position covering this state; `index` = the WAL index holding the last commit (see header). */
  position: LogPosition;
  /** The upload that completed this state in the replica. */
  upload: UploadEvent;
  /** CreatedAt (mtime, ns) of that upload, and the same as RFC 3339 with nanoseconds. */
  uploadedAtNs: bigint;
  uploadedAt: string;
  /** Strictly after this state's upload, strictly before any upload containing the next write. */
  at: Date;
  /** The value to pass to `restore -timestamp` for this state (set by finalize(); `at` before that). */
  timestamp: string;
  /** userTableContent() of the source right after the write. */
  digest: string;
  /** rows in table `t`. */
  rows: number;
}

/** Waits until every commit made before `sinceMs` (default now) is in the replica (see waitForUpload). */
export function waitForReplicaToCatchUp(rep: LitestreamReplicator, sinceMs = Date.now()): Promise<{ position: LogPosition; upload: UploadEvent }> {
  return rep.waitForUpload({ sinceMs });
}

/** Newest object CreatedAt (mtime ns) per generation of a file replica. */
export function generationUpdatedAtNs(replicaDir: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  const root = join(replicaDir, 'generations');
  if (!existsSync(root)) return out;
  for (const g of readdirSync(root)) {
    let max = -1n;
    for (const sub of ['snapshots', 'wal']) {
      const d = join(root, g, sub);
      if (!existsSync(d)) continue;
      for (const f of readdirSync(d)) if (f.endsWith('.lz4')) max = maxBig(max, mtimeNs(join(d, f)));
    }
    if (max >= 0n) out.set(g, max);
  }
  return out;
}

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

export class GroundTruth {
  readonly entries: GroundTruthEntry[] = [];
  private lastAt = 0;

  constructor(readonly settleMs = SETTLE_MS) {}

  /**
   * Commits `fn` as one transaction on `db`, waits until Litestream (`rep`) uploaded it, records the state.
   * `db` must be a connection to `rep.dbPath`.
   */
  async write(rep: LitestreamReplicator, db: SqliteDb, fn: (db: SqliteDb) => void, label = `write ${this.entries.length}`): Promise<GroundTruthEntry> {
    await this.separate();
    // Pin a read snapshot from before the commit (see header: fixes the WAL index of this write).
    const pin = new Database(rep.dbPath, { fileMustExist: true });
    try {
      pin.pragma('busy_timeout = 5000');
      pin.exec('BEGIN');
      pin.prepare('SELECT count(*) FROM sqlite_master').get();
      db.transaction(() => fn(db))();
      const sinceMs = Date.now();
      const up = await rep.waitForUpload({ sinceMs });
      pin.exec('COMMIT');
      return await this.push(rep, db, up, label);
    } finally {
      if (pin.inTransaction) pin.exec('ROLLBACK');
      pin.close();
    }
  }

  /** Records the current state without writing (e.g. right after a start), once it is fully uploaded. */
  async record(rep: LitestreamReplicator, db: SqliteDb, label = `state ${this.entries.length}`): Promise<GroundTruthEntry> {
    await this.separate();
    const up = await rep.waitForUpload({ sinceMs: Date.now() });
    return this.push(rep, db, up, label);
  }

  private async separate(): Promise<void> {
    const wait = this.lastAt + this.settleMs - Date.now();
    if (wait > 0) await sleep(wait);
  }

  private async push(rep: LitestreamReplicator, db: SqliteDb, up: { position: LogPosition; upload: UploadEvent }, label: string): Promise<GroundTruthEntry> {
    const ns = mtimeNs(up.upload.path);
    const notBefore = Math.max(Number(ns / 1_000_000n) + 1, logLineTime(rep.lines[up.upload.line]!) ?? 0) + this.settleMs;
    while (Date.now() < notBefore) await sleep(notBefore - Date.now());
    const at = new Date();
    if (BigInt(at.getTime()) * 1_000_000n <= ns) throw new Error(`clock assumption broken: at=${at.toISOString()} <= upload mtime ${rfc3339Nano(ns)}`);
    this.lastAt = at.getTime();
    const e: GroundTruthEntry = {
      seq: this.entries.length,
      label,
      generation: up.position.generation,
      position: up.position,
      upload: up.upload,
      uploadedAtNs: ns,
      uploadedAt: rfc3339Nano(ns),
      at,
      timestamp: at.toISOString(),
      digest: userTableContent(db),
      rows: rowCount(db),
    };
    this.entries.push(e);
    return e;
  }

  /**
   * Sets each entry's `timestamp`: `at` when it lies inside its generation's object time range, otherwise
   * (the last entries of a generation, spec B8) the exact CreatedAt of the upload that completed the state.
   * Call after Litestream has stopped (its final sync may add objects).
   */
  finalize(replicaDir: string): GroundTruthEntry[] {
    const updated = generationUpdatedAtNs(replicaDir);
    for (const e of this.entries) {
      const end = updated.get(e.generation);
      e.timestamp = end !== undefined && BigInt(e.at.getTime()) * 1_000_000n <= end ? e.at.toISOString() : e.uploadedAt;
    }
    return this.entries;
  }

  /** Generations in the order they were first recorded. */
  generations(): string[] {
    return [...new Set(this.entries.map((e) => e.generation))];
  }
}

/** The state `restore -generation g -index N` must produce: the last entry of g whose commit index <= N. */
export function truthAtIndex(truth: readonly GroundTruthEntry[], generation: string, index: number): GroundTruthEntry | undefined {
  return truth.filter((e) => e.generation === generation && e.position.index <= index).at(-1);
}

/** Distinct WAL indexes (commit indexes of recorded states) of one generation, ascending. */
export function truthIndexes(truth: readonly GroundTruthEntry[], generation: string): number[] {
  return [...new Set(truth.filter((e) => e.generation === generation).map((e) => e.position.index))].sort((a, b) => a - b);
}
