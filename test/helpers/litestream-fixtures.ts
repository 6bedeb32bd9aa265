/**
 * Real replicas written by the real Litestream v0.3.13 (file backend), with ground truth (see
 * litestream-truth.ts). Each builder takes a directory (created if missing; the caller removes it) and lays out
 *   <dir>/db.sqlite            the source database (left in place; Litestream stopped)
 *   <dir>/replica/             the replica root (generations/<g>/{snapshots,wal}/…)
 *   <dir>/litestream.yml       a config naming db.sqlite → replica/ (for `-config` restores and listings)
 * Each builder takes a few seconds (well under 15 s on 2 cores).
 */
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LitestreamReplicator, mtimeNs, rfc3339Nano, snapshotPath, writeLitestreamConfig, type ReplicatorOptions } from './litestream-process.js';
import { openSourceDb, rowCount, textOf, userTableContent, type SqliteDb } from './litestream-source-db.js';
import { GroundTruth, truthIndexes, type GroundTruthEntry } from './litestream-truth.js';

export interface ReplicaFixture {
  dir: string;
  dbPath: string;
  replicaDir: string;
  configPath: string;
  truth: GroundTruthEntry[];
  /** Generations in creation order (the last one is the newest). */
  generations: string[];
  /** The replicator logs of every run, for debugging. */
  logs: string[][];
}

function layout(dir: string) {
  const root = resolve(dir);
  mkdirSync(root, { recursive: true });
  return { dir: root, dbPath: join(root, 'db.sqlite'), replicaDir: join(root, 'replica') };
}

/** Starts Litestream and waits for the generation's snapshot. */
async function startAndSnapshot(o: ReplicatorOptions): Promise<LitestreamReplicator> {
  const rep = await LitestreamReplicator.start(o);
  try {
    await rep.waitForSnapshot();
  } catch (e) {
    await rep.stop();
    throw e;
  }
  return rep;
}

/** A varied transaction: 1-3 inserts of 1.5-4.5 KB text, and every few steps an update or a delete. */
export function mixedWrite(step: number): (db: SqliteDb) => void {
  return (db) => {
    const insert = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    for (let i = 0; i < 1 + (step % 3); i++) insert.run(textOf(step * 100 + i, 1500 + ((step * 977) % 3000)), step);
    if (step % 3 === 2) db.prepare('UPDATE t SET v = ?, n = n + 1000 WHERE id % 4 = ?').run(textOf(step, 300), step % 4);
    if (step % 4 === 3) db.prepare('DELETE FROM t WHERE id = (SELECT min(id) FROM t)').run();
  };
}

/**
 * Snapshot-only replicas. Rows are written and checkpointed into the main DB file BEFORE Litestream starts
 * (then the connection is closed, which deletes the WAL), so the first snapshot (index 0) alone holds every
 * user row; Litestream then uploads index 0's segments, which only add its own `_litestream_*` tables.
 *   - the returned fixture: snapshot + its index's segments (as Litestream left it);
 *   - `snapshotOnly`: a copy (mtimes preserved) with `generations/<g>/wal` removed, i.e. a generation with a
 *     snapshot and no WAL at all ("snapshot only, finalizing database" path of restore). Its only restorable
 *     timestamp is the snapshot's exact CreatedAt (the generation's time range is that single instant).
 * Both restore to the same user content (the truth has a single entry).
 */
export async function makeSnapshotOnlyReplica(tmp: string, opts: { rows?: number } = {}): Promise<ReplicaFixture & { snapshotOnly: ReplicaFixture }> {
  const { dir, dbPath, replicaDir } = layout(tmp);
  const pre = openSourceDb(dbPath);
  const insert = pre.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
  pre.transaction(() => {
    for (let i = 0; i < (opts.rows ?? 50); i++) insert.run(textOf(i, 200 + ((i * 131) % 2000)), i);
  })();
  pre.pragma('wal_checkpoint(TRUNCATE)');
  pre.close();

  const truth = new GroundTruth();
  const rep = await startAndSnapshot({ dbPath, replicaDir, configDir: dir });
  const db = openSourceDb(dbPath);
  try {
    await truth.record(rep, db, 'pre-existing rows');
  } finally {
    await rep.stop();
    db.close();
  }
  const entries = truth.finalize(replicaDir);
  const generation = entries[0]!.generation;

  const soDir = join(dir, 'snapshot-only');
  const soReplica = join(soDir, 'replica');
  mkdirSync(soDir, { recursive: true });
  cpSync(replicaDir, soReplica, { recursive: true, preserveTimestamps: true });
  rmSync(join(soReplica, 'generations', generation, 'wal'), { recursive: true, force: true });
  const snapNs = mtimeNs(snapshotPath(soReplica, generation, rep.snapshots()[0]!.position.index));
  const soTruth: GroundTruthEntry[] = entries.map((e) => ({ ...e, uploadedAtNs: snapNs, uploadedAt: rfc3339Nano(snapNs), timestamp: rfc3339Nano(snapNs) }));
  const snapshotOnly: ReplicaFixture = {
    dir: soDir,
    dbPath,
    replicaDir: soReplica,
    configPath: writeLitestreamConfig({ dbPath, replicaDir: soReplica, configDir: soDir }),
    truth: soTruth,
    generations: [generation],
    logs: [],
  };
  return { dir, dbPath, replicaDir, configPath: rep.configPath, truth: entries, generations: [generation], logs: [rep.lines], snapshotOnly };
}

/**
 * One generation spanning several WAL indexes: `min-checkpoint-page-count: 5` makes Litestream checkpoint
 * (and start a new index) every couple of transactions. Throws unless the truth spans >= 3 indexes.
 */
export async function makeMultiIndexReplica(tmp: string, opts: { transactions?: number; minCheckpointPageCount?: number } = {}): Promise<ReplicaFixture> {
  const { dir, dbPath, replicaDir } = layout(tmp);
  const db = openSourceDb(dbPath);
  const truth = new GroundTruth();
  const rep = await startAndSnapshot({ dbPath, replicaDir, configDir: dir, minCheckpointPageCount: opts.minCheckpointPageCount ?? 5 });
  try {
    await truth.record(rep, db, 'empty table');
    for (let step = 0; step < (opts.transactions ?? 12); step++) await truth.write(rep, db, mixedWrite(step), `tx ${step}`);
  } finally {
    await rep.stop();
    db.close();
  }
  const entries = truth.finalize(replicaDir);
  const indexes = truthIndexes(entries, entries[0]!.generation);
  if (indexes.length < 3) throw new Error(`multi-index fixture spans only indexes ${indexes.join(',')}\n${rep.tail()}`);
  return { dir, dbPath, replicaDir, configPath: rep.configPath, truth: entries, generations: truth.generations(), logs: [rep.lines] };
}

/**
 * Several generations: replicate and write; stop Litestream; close the app connection (the last one, so
 * SQLite deletes the WAL) and write with a plain connection while nothing replicates; restart. Litestream's
 * init header check fails ("cannot determine last wal position, clearing generation") → new generation with a
 * fresh snapshot. Throws unless `generations` distinct generations were produced.
 */
export async function makeMultiGenerationReplica(tmp: string, opts: { generations?: number; writesPerGeneration?: number } = {}): Promise<ReplicaFixture> {
  const { dir, dbPath, replicaDir } = layout(tmp);
  const want = opts.generations ?? 3;
  const truth = new GroundTruth();
  const logs: string[][] = [];
  let configPath = '';
  let step = 0;
  for (let g = 0; g < want; g++) {
    if (g > 0) {
      const offline = openSourceDb(dbPath);
      offline.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run(`written while litestream was stopped (${g})`, -g);
      offline.close();
    }
    const db = openSourceDb(dbPath);
    const rep = await startAndSnapshot({ dbPath, replicaDir, configDir: dir, minCheckpointPageCount: 5 });
    configPath = rep.configPath;
    logs.push(rep.lines);
    try {
      await truth.record(rep, db, `generation ${g} start`);
      for (let i = 0; i < (opts.writesPerGeneration ?? 3); i++) await truth.write(rep, db, mixedWrite(step++), `gen ${g} tx ${i}`);
    } finally {
      await rep.stop();
      db.close();
    }
  }
  const entries = truth.finalize(replicaDir);
  const generations = truth.generations();
  if (generations.length !== want) throw new Error(`expected ${want} generations, got ${generations.join(',')}`);
  return { dir, dbPath, replicaDir, configPath, truth: entries, generations, logs };
}

/**
 * A few thousand rows changed over time: each batch inserts `rowsPerBatch` rows of 80-480 bytes, updates
 * every 7th row and deletes some rows; `min-checkpoint-page-count` (default 64) gives a new index every batch
 * or two. Throws unless >= 3 indexes and > 2000 final rows.
 */
export async function makeLargeHistoryReplica(tmp: string, opts: { batches?: number; rowsPerBatch?: number; minCheckpointPageCount?: number } = {}): Promise<ReplicaFixture> {
  const { dir, dbPath, replicaDir } = layout(tmp);
  const db = openSourceDb(dbPath);
  db.exec('CREATE TABLE IF NOT EXISTS tags (k TEXT PRIMARY KEY, cnt INTEGER) WITHOUT ROWID');
  const truth = new GroundTruth();
  const rep = await startAndSnapshot({ dbPath, replicaDir, configDir: dir, minCheckpointPageCount: opts.minCheckpointPageCount ?? 64 });
  const batches = opts.batches ?? 10;
  const rowsPerBatch = opts.rowsPerBatch ?? 400;
  try {
    for (let b = 0; b < batches; b++) {
      await truth.write(
        rep,
        db,
        (d) => {
          const insert = d.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
          for (let i = 0; i < rowsPerBatch; i++) insert.run(textOf(b * 100_000 + i, 80 + ((i * 37) % 400)), b * rowsPerBatch + i);
          d.prepare('UPDATE t SET n = n * 2, v = substr(v, 1, 40) WHERE id % 7 = ?').run(b % 7);
          d.prepare('DELETE FROM t WHERE id % 13 = ? AND n % 2 = 1').run(b % 13);
          d.prepare('INSERT INTO tags (k, cnt) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET cnt = cnt + 1').run(`tag-${b % 4}`);
        },
        `batch ${b}`,
      );
    }
  } finally {
    await rep.stop();
    db.close();
  }
  const entries = truth.finalize(replicaDir);
  const indexes = truthIndexes(entries, entries[0]!.generation);
  if (indexes.length < 3) throw new Error(`large-history fixture spans only indexes ${indexes.join(',')}`);
  if (rowCount(dbPath) <= 2000) throw new Error(`large-history fixture has only ${rowCount(dbPath)} rows`);
  if (userTableContent(dbPath) !== entries.at(-1)!.digest) throw new Error('source changed after the last recorded write');
  return { dir, dbPath, replicaDir, configPath: rep.configPath, truth: entries, generations: truth.generations(), logs: [rep.lines] };
}
