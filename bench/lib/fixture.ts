/**
 * The benchmark fixture: a ~200 MB WAL-mode database and its `type: file` replica, written by the real
 * Litestream v0.3.13 (one snapshot, then several WAL indexes of segments), cached between runs.
 *
 * Building takes a minute, so it is cached in bench/out/restore-fixture/ with a manifest; the manifest
 * is written last and records every replica file's size, so an interrupted or tampered build is rebuilt
 * rather than benchmarked. The build proves itself before it is cached: Litestream's own restore of the
 * replica must give the source's content.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import Database from 'better-sqlite3';
import { RowGenerator, SCHEMA, TABLE, rowBytes } from './data.js';
import { contentDigest, type Digest } from './digest.js';
import { Replicator } from './litestream.js';
import { cleanEnv, litestreamBin, litestreamVersion } from './shared.js';

/** Bump when the workload or layout changes, so old caches are rebuilt. */
const FIXTURE_FORMAT = 5;
const MiB = 1024 * 1024;

/** What a fixture holds: a database loaded before Litestream starts, then live transactions it ships. */
export interface FixtureProfile {
  name: 'large' | 'huge' | 'long-history' | 'small';
  /** Database size before Litestream starts: this all goes into the snapshot. */
  initialBytes: number;
  liveTxs: number;
  txInsertBytes: number;
  txUpdates: number;
  /** WAL pages before Litestream checkpoints; each checkpoint starts a new WAL index. */
  minCheckpointPages: number;
  minIndexes: number;
  minSegments: number;
  /** Litestream's sync-interval and monitor-interval while building. */
  interval: string;
}

export const PROFILES: Record<FixtureProfile['name'], FixtureProfile> = {
  /**
   * ~200 MB: 170 MiB in the snapshot, then transactions of 1 MiB of new rows plus 100 rewritten old rows
   * (each rewrites a whole page somewhere in the file): ~20 MiB inserted, ~25–30 MiB of WAL frames in
   * ~7 indexes (1000 pages = 4 MiB of WAL per index).
   */
  large: {
    name: 'large',
    initialBytes: 170 * MiB,
    liveTxs: 20,
    txInsertBytes: 1 * MiB,
    txUpdates: 100,
    minCheckpointPages: 1000,
    minIndexes: 4,
    minSegments: 10,
    interval: '100ms',
  },
  /** The same at ~1 GB: restore time and peak memory must stay flat in database size. */
  huge: {
    name: 'huge',
    initialBytes: 1000 * MiB,
    liveTxs: 20,
    txInsertBytes: 1 * MiB,
    txUpdates: 100,
    minCheckpointPages: 1000,
    minIndexes: 4,
    minSegments: 10,
    interval: '100ms',
  },
  /**
   * A long history: a small snapshot (4 MiB), then ~1,150 small transactions (a row or two each), each
   * its own WAL segment, all in one WAL index (no checkpoint in between): what hours of light traffic at
   * `sync-interval: 1s` leave, compressed in time. Restoring it is one request per segment, and
   * Litestream reads one index's segments one after another.
   */
  /** A few seconds to build and restore: a check that the harness (and a variant such as --age) runs, not a measurement. */
  small: {
    name: 'small',
    initialBytes: 8 * MiB,
    liveTxs: 6,
    txInsertBytes: 256 * 1024,
    txUpdates: 20,
    minCheckpointPages: 100,
    minIndexes: 2,
    minSegments: 4,
    interval: '100ms',
  },
  'long-history': {
    name: 'long-history',
    initialBytes: 4 * MiB,
    liveTxs: 1150,
    txInsertBytes: 300,
    txUpdates: 0,
    minCheckpointPages: 100_000,
    minIndexes: 1,
    minSegments: 1100,
    interval: '10ms',
  },
};

export interface FixturePaths {
  dir: string;
  db: string;
  replica: string;
  manifest: string;
}

export function fixturePaths(dir: string): FixturePaths {
  // One directory per profile (the caller passes bench/out/restore-fixture[-<profile>]).
  return { dir, db: join(dir, 'db.sqlite'), replica: join(dir, 'replica'), manifest: join(dir, 'manifest.json') };
}

export interface ReplicaStats {
  generations: string[];
  snapshots: { count: number; bytes: number };
  segments: { count: number; bytes: number };
  /** Distinct WAL indexes that have segments. */
  indexes: number;
  files: { path: string; bytes: number }[];
}

export interface Manifest {
  format: number;
  profile: FixtureProfile['name'];
  litestream: string;
  builtAt: string;
  buildSeconds: number;
  db: { bytes: number; digest: Digest };
  replica: ReplicaStats;
}

/** Litestream v0.3 file layout: generations/<gen>/snapshots/<index>.snapshot.lz4, …/wal/<index>_<offset>.wal.lz4. */
export function replicaStats(replicaDir: string): ReplicaStats {
  const files = readdirSync(replicaDir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => ({ path: relative(replicaDir, join(e.parentPath, e.name)), bytes: statSync(join(e.parentPath, e.name)).size }))
    .sort((a, b) => a.path.localeCompare(b.path));
  const snaps = files.filter((f) => /^generations\/[0-9a-f]{16}\/snapshots\/[0-9a-f]{8}\.snapshot\.lz4$/.test(f.path));
  const segs = files.filter((f) => /^generations\/[0-9a-f]{16}\/wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/.test(f.path));
  const sum = (fs: typeof files) => fs.reduce((n, f) => n + f.bytes, 0);
  return {
    generations: [...new Set(files.map((f) => f.path.split('/')[1]!))].sort(),
    snapshots: { count: snaps.length, bytes: sum(snaps) },
    segments: { count: segs.length, bytes: sum(segs) },
    indexes: new Set(segs.map((f) => basename(f.path).slice(0, 8))).size,
    files,
  };
}

/** The manifest if the cached fixture is complete and unchanged, else why not. */
export function loadFixture(p: FixturePaths, profile: FixtureProfile): Manifest | string {
  if (!existsSync(p.manifest)) return 'no cached fixture';
  const m = JSON.parse(readFileSync(p.manifest, 'utf8')) as Manifest;
  if (m.format !== FIXTURE_FORMAT) return `cached fixture has format ${m.format}, want ${FIXTURE_FORMAT}`;
  if (m.profile !== profile.name) return `cached fixture is ${m.profile}, want ${profile.name}`;
  if (!existsSync(p.db) || statSync(p.db).size !== m.db.bytes) return 'cached database is missing or changed';
  // Read-only opens leave an empty -wal behind; a non-empty one means someone wrote to the source.
  if (existsSync(`${p.db}-wal`) && statSync(`${p.db}-wal`).size > 0) return 'cached database has a non-empty WAL';
  if (!existsSync(p.replica)) return 'cached replica is missing';
  if (JSON.stringify(replicaStats(p.replica).files) !== JSON.stringify(m.replica.files)) return 'cached replica files changed';
  return m;
}

/** Loads rows until the file reaches the profile's initial size; returns the number of rows. */
function bulkLoad(path: string, gen: RowGenerator, initialBytes: number): number {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    // Before Litestream starts nothing needs to be durable; this halves the load time.
    db.pragma('synchronous = OFF');
    db.exec(SCHEMA);
    const insert = db.prepare(`INSERT INTO ${TABLE} (user_id, created_at, doc, token) VALUES (?, ?, ?, ?)`);
    const batch = db.transaction(() => {
      for (let i = 0; i < 2000; i++) {
        const r = gen.row();
        insert.run(r.userId, r.createdAt, r.doc, r.token);
      }
    });
    const dbBytes = () => (db.pragma('page_count', { simple: true }) as number) * (db.pragma('page_size', { simple: true }) as number);
    let rows = 0;
    while (dbBytes() < initialBytes) {
      batch();
      rows += 2000;
    }
    return rows;
  } finally {
    db.close(); // the last connection checkpoints: the snapshot will see all of it in the main file
  }
}

/** The live transactions: inserts and in-place updates of random existing rows. */
async function liveWrites(
  db: Database.Database,
  ls: Replicator,
  gen: RowGenerator,
  initialRows: number,
  pr: FixtureProfile,
): Promise<void> {
  const insert = db.prepare(`INSERT INTO ${TABLE} (user_id, created_at, doc, token) VALUES (?, ?, ?, ?)`);
  const update = db.prepare(`UPDATE ${TABLE} SET doc = ?, token = ? WHERE id = ?`);
  const tx = db.transaction(() => {
    for (let n = 0; n < pr.txInsertBytes;) {
      const r = gen.row();
      insert.run(r.userId, r.createdAt, r.doc, r.token);
      n += rowBytes(r);
    }
    for (let i = 0; i < pr.txUpdates; i++) {
      const r = gen.row();
      update.run(r.doc, r.token, 1 + gen.int(initialRows));
    }
  });
  for (let i = 0; i < pr.liveTxs; i++) {
    const before = ls.lines.length;
    tx();
    // Pace the writer to Litestream: a writer that outruns it gets one huge WAL index (Litestream only
    // checkpoints between syncs, and its checkpoint ends with a write of its own that has to get the
    // lock), not the several ~4 MiB indexes a steady app produces.
    await ls.waitFor(/msg="wal segment written"/, before, 30_000);
  }
}

export async function buildFixture(p: FixturePaths, pr: FixtureProfile, log: (s: string) => void): Promise<Manifest> {
  const started = Date.now();
  rmSync(p.dir, { recursive: true, force: true });
  mkdirSync(p.dir, { recursive: true });
  const gen = new RowGenerator();

  log(`building the ${pr.name} fixture in ${p.dir} (about a minute)…`);
  const rows = bulkLoad(p.db, gen, pr.initialBytes);
  log(`  loaded ${rows} rows, ${(statSync(p.db).size / MiB).toFixed(0)} MiB; starting litestream replicate`);

  const db = new Database(p.db);
  db.pragma('busy_timeout = 10000');
  db.pragma('synchronous = NORMAL');
  // Leave checkpoints to Litestream (as its docs advise), so min-checkpoint-page-count alone decides
  // where one WAL index ends and the next begins.
  db.pragma('wal_autocheckpoint = 0');
  const ls = Replicator.start({
    dbPath: p.db,
    replicaDir: p.replica,
    configPath: join(p.dir, 'litestream.yml'),
    minCheckpointPageCount: pr.minCheckpointPages,
    interval: pr.interval,
  });
  try {
    await ls.waitFor(/msg="snapshot written"/, 0, 120_000);
    log(`  snapshot written after ${((Date.now() - started) / 1000).toFixed(0)} s; ${pr.liveTxs} more transactions`);
    await liveWrites(db, ls, gen, rows, pr);
    // liveWrites saw a segment logged after the last commit; once Litestream then stays quiet for 10
    // sync intervals it has shipped everything. The restore check below is the real proof.
    await ls.waitQuiet(/msg="wal segment written"/, 1000);
    log('  last write shipped; stopping litestream');
  } finally {
    const code = await ls.stop();
    db.close();
    if (code !== 0) log(`  (litestream exited with ${code})`);
  }
  // Litestream's shadow WAL copies: not part of the replica, not needed again.
  rmSync(join(dirname(p.db), `.${basename(p.db)}-litestream`), { recursive: true, force: true });

  const replica = replicaStats(p.replica);
  if (replica.generations.length !== 1) throw new Error(`expected one generation, got ${replica.generations.join(', ')}:\n${ls.tail()}`);
  if (replica.snapshots.count !== 1) throw new Error(`expected one snapshot, got ${replica.snapshots.count}`);
  if (replica.indexes < pr.minIndexes) throw new Error(`expected at least ${pr.minIndexes} WAL indexes, got ${replica.indexes}`);
  if (replica.segments.count < pr.minSegments)
    throw new Error(`expected at least ${pr.minSegments} WAL segments, got ${replica.segments.count}`);

  const digest = contentDigest(p.db);
  const check = join(p.dir, 'verify', 'db');
  const r = spawnSync(litestreamBin(), ['restore', '-o', check, `file://${p.replica}`], { env: cleanEnv({ LANG: 'C' }), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`litestream restore of the new fixture failed:\n${r.stderr}`);
  const restored = contentDigest(check);
  rmSync(dirname(check), { recursive: true, force: true });
  if (restored.sha256 !== digest.sha256)
    throw new Error('litestream restore of the new fixture differs from the source: the last writes were not shipped');

  const manifest: Manifest = {
    format: FIXTURE_FORMAT,
    profile: pr.name,
    litestream: litestreamVersion(),
    builtAt: new Date().toISOString(),
    buildSeconds: (Date.now() - started) / 1000,
    db: { bytes: statSync(p.db).size, digest },
    replica,
  };
  writeFileSync(p.manifest, `${JSON.stringify(manifest, null, 2)}\n`);
  log(`  fixture ready in ${manifest.buildSeconds.toFixed(0)} s`);
  return manifest;
}
