/**
 * Real replicas written by the real Litestream, with ground truth recorded while writing: after each
 * transaction we wait until Litestream has uploaded it, note a timestamp strictly after that upload
 * (and strictly before the next write), and the content digest of the source at that moment.
 *
 * Timing facts this relies on: file-replica createdAt is the segment file's mtime, stamped from the
 * kernel's coarse clock (it may lag real time by a few ms, never lead it). So a timestamp taken
 * SETTLE_MS after an upload is after its mtime, and the next write's segments (uploaded after the next
 * write, which happens SETTLE_MS later still) get an mtime after it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, openSync, readSync, closeSync, readdirSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type Database from 'better-sqlite3';
import { WalScanner } from '../../src/sqlite/wal-format.js';
import { LitestreamReplicator, parsePosition, type LoggedProcess, type LogPosition } from './oracle.js';
import { contentDigest, openSourceDb, textOf } from './source-db.js';

const SETTLE_MS = 25;
/** Silence from a Litestream logging at debug level with a 50 ms monitor interval that means it is stuck. */
const STALL_MS = 10_000;

/** Litestream stopped logging while a fixture waited for an upload. */
class LitestreamStalled extends Error {}

export interface TruthEntry {
  /** A moment after this state was uploaded and before the next write. */
  at: Date;
  digest: string;
  rows: number;
  /** The last uploaded position covering this state. */
  pos: LogPosition;
}

export interface ReplicaFixture {
  dir: string;
  dbPath: string;
  replicaDir: string;
  configPath: string;
  truth: TruthEntry[];
  generations: string[];
}

export function fixtureDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `stn-${prefix}-`));
}

function readHeader(path: string): Buffer | undefined {
  if (!existsSync(path)) return undefined;
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(32);
    return readSync(fd, b, 0, 32, 0) === 32 ? b : undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * The end of the last valid commit in a live WAL. Not the file size: after SQLite restarts a WAL, the
 * frames of the previous cycle stay in the file past the new end, with old salts.
 */
function committedWalSize(path: string): number {
  if (!existsSync(path)) return 0;
  const scanner = new WalScanner();
  scanner.update(readFileSync(path));
  return scanner.result().committedSize;
}

/**
 * Waits until everything committed to the database so far is in the replica: finds the shadow WAL index
 * that holds the real WAL's current cycle (same header), then waits for a segment that reaches the real
 * WAL's end in that index, or any segment of a later index.
 */
export async function waitForUpload(ls: LoggedProcess, dbPath: string, afterLine: number): Promise<LogPosition> {
  const metaWal = (gen: string) => join(dirname(dbPath), `.${basename(dbPath)}-litestream`, 'generations', gen, 'wal');
  const deadline = Date.now() + 60_000;
  let lastLines = ls.lines.length;
  let lastLineAt = Date.now();
  while (Date.now() < deadline) {
    // Lines seen before this look; the wait below starts here, so a segment logged while we look is not missed.
    const seen = ls.lines.length;
    if (seen !== lastLines) [lastLines, lastLineAt] = [seen, Date.now()];
    // At debug level Litestream logs a sync line every monitor interval (50 ms here): silence means it
    // is stuck (seen once in ~16 CI runs, right after a WAL restart), not slow.
    if (ls.running && Date.now() - lastLineAt > STALL_MS)
      throw new LitestreamStalled(`litestream logged nothing for ${STALL_MS} ms:\n${ls.tail()}`);
    const realHeader = readHeader(`${dbPath}-wal`);
    const walSize = committedWalSize(`${dbPath}-wal`);
    const segLines = ls.lines
      .slice(0, seen)
      .map((l, i) => ({ l, i }))
      .filter(({ l, i }) => i >= afterLine && l.includes('msg="wal segment written"'));
    const lastGen = [...ls.lines]
      .reverse()
      .map(parsePosition)
      .find((p) => p !== undefined)?.generation;
    if (realHeader && lastGen) {
      const dir = metaWal(lastGen);
      const shadows = existsSync(dir)
        ? readdirSync(dir)
            .filter((f) => /^[0-9a-f]{8}\.wal$/.test(f))
            .sort()
        : [];
      const match = shadows.reverse().find((f) => readHeader(join(dir, f))?.equals(realHeader));
      if (match) {
        const index = parseInt(match.slice(0, 8), 16);
        for (const { l } of segLines) {
          const pos = parsePosition(l)!;
          const sz = Number(/ sz=(\d+)/.exec(l)?.[1] ?? 0);
          if (pos.generation === lastGen && (pos.index > index || (pos.index === index && pos.offset + sz >= walSize))) return pos;
        }
      }
    }
    // A new segment, or a short pause: the shadow WAL that matches may appear after its segment was logged.
    if (!ls.running) break;
    await ls.waitForLog(/msg="wal segment written"/, seen, 500).catch(() => undefined);
  }
  throw new Error(`litestream did not upload the last write:\n${ls.tail()}`);
}

/** Commits `fn` on the source (if given), waits for the upload, and records the truth. */
export async function writeAndRecord(
  ls: LoggedProcess,
  db: Database.Database,
  dbPath: string,
  truth: TruthEntry[],
  fn?: () => void,
  opts: { outsideTransaction?: boolean } = {},
): Promise<void> {
  const after = fn ? ls.lines.length : 0;
  if (fn) {
    if (opts.outsideTransaction) fn();
    else db.transaction(fn)();
  }
  const pos = await waitForUpload(ls, dbPath, after);
  await sleep(SETTLE_MS);
  const rows = (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
  truth.push({ at: new Date(), digest: contentDigest(db), rows, pos });
  await sleep(SETTLE_MS);
}

/** Varied transactions: inserts of a few KB (to fill pages fast), updates and deletes. */
export function mixedWrite(db: Database.Database, step: number): () => void {
  return () => {
    const insert = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    for (let i = 0; i < 1 + (step % 4); i++) insert.run(textOf(step * 100 + i, 1500 + ((step * 37) % 3000)), step);
    if (step % 3 === 2) db.prepare('UPDATE t SET v = ?, n = n + 1 WHERE id % 5 = ?').run(textOf(step, 200), step % 5);
    if (step % 5 === 4) db.prepare('DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY id LIMIT 1)').run();
  };
}

async function startReplicating(dbPath: string, replicaDir: string, minCheckpointPageCount: number) {
  const ls = LitestreamReplicator.start({ dbPath, replicaDir, minCheckpointPageCount, monitorInterval: '50ms', syncInterval: '50ms' });
  await ls.waitForLog(/msg="snapshot written"/);
  await ls.waitForSegment(0);
  return ls;
}

/** Records one transaction of the history (`fn`, or none: the state as it is) once Litestream has uploaded it. */
type RecordWrite = (fn?: () => void, opts?: { outsideTransaction?: boolean }) => Promise<void>;

/**
 * One generation replicated by Litestream from a new source database in `dir`: `write` makes the history,
 * recording each transaction; then Litestream stops and the fixture is what it wrote, with the truth.
 */
async function litestreamFixture(
  dir: string,
  minCheckpointPageCount: number,
  write: (db: Database.Database, record: RecordWrite) => Promise<void>,
): Promise<ReplicaFixture> {
  const dbPath = join(dir, 'db.sqlite');
  const replicaDir = join(dir, 'replica');
  for (let attempt = 1; ; attempt++) {
    const db = openSourceDb(dbPath);
    const truth: TruthEntry[] = [];
    const ls = await startReplicating(dbPath, replicaDir, minCheckpointPageCount);
    try {
      await write(db, (fn, opts) => writeAndRecord(ls, db, dbPath, truth, fn, opts));
    } catch (err) {
      // The oracle itself got stuck: its replica is not a fixture to test against. Built again from
      // nothing, once (a second stall fails the suite).
      if (!(err instanceof LitestreamStalled) || attempt > 1) throw err;
      console.warn(`fixture ${dir}: ${err.message.split('\n')[0]}; building it again`);
      await ls.stop('SIGKILL');
      db.close();
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      continue;
    } finally {
      await ls.stop();
      if (db.open) db.close();
    }
    return { dir, dbPath, replicaDir, configPath: ls.configPath, truth, generations: [...new Set(truth.map((t) => t.pos.generation))] };
  }
}

/** One generation, a snapshot at index 0 and `transactions` writes spread over several WAL indexes. */
export async function makeMultiIndexReplica(opts: {
  transactions: number;
  minCheckpointPageCount?: number;
  dir?: string;
}): Promise<ReplicaFixture> {
  return litestreamFixture(opts.dir ?? fixtureDir('multi-index'), opts.minCheckpointPageCount ?? 5, async (db, record) => {
    await record(); // the state before any write
    for (let step = 0; step < opts.transactions; step++) await record(mixedWrite(db, step));
  });
}

/**
 * Several generations: replicate, stop Litestream, write with no replicator running (closing the last
 * connection deletes the WAL, so Litestream's header check fails and it starts a new generation), repeat.
 */
export async function makeMultiGenerationReplica(opts: { generations: number; writesPerGeneration: number }): Promise<ReplicaFixture> {
  const dir = fixtureDir('multi-gen');
  const dbPath = join(dir, 'db.sqlite');
  const replicaDir = join(dir, 'replica');
  const truth: TruthEntry[] = [];
  let configPath = '';
  let step = 0;
  for (let g = 0; g < opts.generations; g++) {
    if (g > 0) {
      // Out-of-band write while nobody replicates.
      const offline = openSourceDb(dbPath);
      offline.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('written while litestream was stopped', -g);
      offline.close();
    }
    const db = openSourceDb(dbPath);
    const ls = await startReplicating(dbPath, replicaDir, 5);
    configPath = ls.configPath;
    try {
      for (let i = 0; i < opts.writesPerGeneration; i++) await writeAndRecord(ls, db, dbPath, truth, mixedWrite(db, step++));
    } finally {
      await ls.stop();
      db.close();
    }
  }
  return { dir, dbPath, replicaDir, configPath, truth, generations: [...new Set(truth.map((t) => t.pos.generation))] };
}

/** A few thousand rows inserted, updated and deleted in batches over time. */
export async function makeLargeHistoryReplica(opts: { batches: number; rowsPerBatch: number }): Promise<ReplicaFixture> {
  return litestreamFixture(fixtureDir('large-history'), 200, async (db, record) => {
    for (let b = 0; b < opts.batches; b++) {
      await record(() => {
        const insert = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
        for (let i = 0; i < opts.rowsPerBatch; i++) insert.run(textOf(b * 100_000 + i, 100 + (i % 400)), b);
        db.prepare('UPDATE t SET n = n * 2, v = substr(v, 1, 50) WHERE id % 7 = ?').run(b % 7);
        db.prepare('DELETE FROM t WHERE id % 11 = ? AND n < ?').run(b % 11, b);
      });
    }
  });
}

/**
 * A database that shrinks (DELETE + VACUUM) in the middle of its history and grows again: restore must
 * cut the file at each commit's size, as SQLite's checkpoints do.
 */
export async function makeShrinkingReplica(): Promise<ReplicaFixture> {
  return litestreamFixture(fixtureDir('shrinking'), 50, async (db, record) => {
    const insert = (from: number, n: number) => () => {
      const stmt = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
      for (let i = from; i < from + n; i++) stmt.run(textOf(i, 3000), i);
    };
    await record(insert(0, 150));
    await record(insert(150, 150));
    await record(() => db.prepare('DELETE FROM t WHERE id > 20').run());
    await record(() => db.exec('VACUUM'), { outsideTransaction: true });
    await record(insert(1000, 40));
    await record(() => db.prepare('UPDATE t SET v = ? WHERE id % 3 = 0').run('updated'));
  });
}

/**
 * One transaction per entry of `bytes`, each inserting that much text LZ4 cannot shrink (hex of random
 * bytes), so the WAL segments range from under a KiB to several MiB: a restore reads some into one small
 * buffer, some into many pooled ones, and some in more than one read call.
 */
export async function makeMixedSegmentReplica(bytes: readonly number[]): Promise<ReplicaFixture> {
  return litestreamFixture(fixtureDir('mixed-segments'), 200, async (db, record) => {
    for (const [i, n] of bytes.entries()) {
      await record(() => {
        const insert = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
        // Rows of at most 64 KiB of text each, so that big transactions span many pages and rows.
        for (let left = n; left > 0; left -= 65_536) insert.run(randomBytes(Math.ceil(Math.min(left, 65_536) / 2)).toString('hex'), i);
      });
    }
  });
}
