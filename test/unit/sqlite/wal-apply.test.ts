/**
 * WalApplier against SQLite itself: a snapshot plus WAL files applied through the applier must give the
 * very bytes SQLite's own recovery and checkpoint give for the same files, whatever the chunking, and
 * whether a transaction fits in memory or spills to disk. Transactions that never committed (a WAL cut
 * before its commit frame) must leave no trace.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { WalApplier } from '../../../src/sqlite/wal-apply.js';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from '../../../src/sqlite/wal-format.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const PAGE = 4096;

interface History {
  dir: string;
  /** The database file when the WAL was empty: what a snapshot holds. */
  snapshot: Buffer;
  /** One WAL file per "index": the WAL as it stood before each checkpoint restarted it. */
  wals: Buffer[];
}

/**
 * Writes through SQLite with automatic checkpoints off, keeping the database file from before the first
 * WAL and every WAL file before it is restarted: big inserts, updates all over the file, deletes, and a
 * VACUUM that shrinks the database.
 */
function buildHistory(): History {
  const dir = mkdtempSync(join(tmpdir(), 'stn-walapply-'));
  dirs.push(dir);
  const path = join(dir, 'src.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX t_v ON t (v)');
  const insert = db.prepare('INSERT INTO t (v) VALUES (randomblob(?))');
  db.transaction(() => {
    for (let i = 0; i < 2000; i++) insert.run(300);
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  const snapshot = readFileSync(path);
  const wals: Buffer[] = [];
  const cycle = () => {
    wals.push(readFileSync(`${path}-wal`));
    db.pragma('wal_checkpoint(TRUNCATE)');
  };
  // Index 1: several transactions, one of them large (~1.5 MB of pages).
  db.transaction(() => {
    for (let i = 0; i < 4000; i++) insert.run(350);
  })();
  db.exec('UPDATE t SET v = randomblob(310) WHERE id % 7 = 0');
  for (let i = 0; i < 20; i++) insert.run(100);
  cycle();
  // Index 2: deletes, then a VACUUM that shrinks the file, then more writes.
  db.exec('DELETE FROM t WHERE id > 1500');
  db.exec('VACUUM');
  db.transaction(() => {
    for (let i = 0; i < 300; i++) insert.run(200);
  })();
  cycle();
  // Index 3: the file grows back.
  db.transaction(() => {
    for (let i = 0; i < 3000; i++) insert.run(250);
  })();
  db.exec('UPDATE t SET v = randomblob(20) WHERE id % 3 = 0');
  cycle();
  db.close();
  return { dir, snapshot, wals };
}

/** What SQLite makes of the snapshot and these WAL files applied in turn: each recovered, then checkpointed. */
function sqliteResult(h: History, wals: Buffer[], name: string): Buffer {
  const path = join(h.dir, `${name}.db`);
  writeFileSync(path, h.snapshot);
  for (const wal of wals) {
    writeFileSync(`${path}-wal`, wal);
    const db = new Database(path);
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close(); // the last connection: the WAL is checkpointed and deleted
  }
  expect(existsSync(`${path}-wal`)).toBe(false);
  return readFileSync(path);
}

async function applyWithApplier(
  h: History,
  wals: Buffer[],
  name: string,
  chunkSizes: number[],
  memoryLimit?: number,
  /** Each chunk one byte into its buffer, off a 4-byte boundary (frames are then checked from a copy). */
  offWordBoundary = false,
): Promise<{ bytes: Buffer; spilled: boolean }> {
  const path = join(h.dir, `${name}.db`);
  writeFileSync(path, h.snapshot);
  const handle = await open(path, 'r+');
  const spillPath = `${path}-spill`;
  let spilled = false;
  const applier = new WalApplier(handle, h.snapshot.length / PAGE, { pageSize: PAGE, spillPath, memoryLimit });
  try {
    let c = 0;
    for (const [i, wal] of wals.entries()) {
      applier.beginIndex(`wal index ${i}`);
      for (let at = 0; at < wal.length;) {
        const n = chunkSizes[c++ % chunkSizes.length]!;
        // A copy, then scribbled over: the applier must have taken what it keeps during the call.
        const piece = wal.subarray(at, at + n);
        const chunk = offWordBoundary ? Buffer.from(new ArrayBuffer(piece.length + 1), 1, piece.length) : Buffer.alloc(piece.length);
        chunk.set(piece);
        applier.update(chunk);
        chunk.fill(0xee);
        spilled ||= existsSync(spillPath);
        at += n;
      }
      const scan = applier.endIndex();
      expect(scan.stopReason).toBeUndefined();
      expect(scan.size).toBe(wal.length);
    }
    applier.finish();
  } finally {
    applier.close();
    await handle.close();
  }
  expect(existsSync(spillPath)).toBe(false);
  return { bytes: readFileSync(path), spilled };
}

describe('WalApplier', () => {
  const h = buildHistory();
  const expected = sqliteResult(h, h.wals, 'sqlite');

  it('gives SQLite’s own bytes, in whole frames and in odd-sized chunks', async () => {
    expect(h.wals).toHaveLength(3);
    const whole = await applyWithApplier(h, h.wals, 'whole', [1 << 22]);
    expect(whole.spilled).toBe(false);
    expect(whole.bytes.equals(expected)).toBe(true);
    const odd = await applyWithApplier(h, h.wals, 'odd', [1, 31, 4097, 24, 65_536, 7]);
    expect(odd.bytes.equals(expected)).toBe(true);
  });

  it('gives SQLite’s own bytes from chunks that sit off a 4-byte boundary of their buffer', async () => {
    // Frames are checked in place as 32-bit words when they can be, from an aligned copy when not.
    const off = await applyWithApplier(h, h.wals, 'off-word', [1 << 22], undefined, true);
    expect(off.bytes.equals(expected)).toBe(true);
    const offSpill = await applyWithApplier(h, h.wals, 'off-word-spill', [100_000], 64 * 1024, true);
    expect(offSpill.spilled).toBe(true);
    expect(offSpill.bytes.equals(expected)).toBe(true);
  });

  it('spills a transaction larger than its memory limit and still gives SQLite’s bytes', async () => {
    const r = await applyWithApplier(h, h.wals, 'spill', [100_000], 64 * 1024);
    expect(r.spilled).toBe(true);
    expect(r.bytes.equals(expected)).toBe(true);
  });

  it('drops a transaction whose commit frame never arrived', async () => {
    // The last WAL cut just before its last frame (a commit frame): that transaction must not appear.
    const frame = WAL_FRAME_HEADER_SIZE + PAGE;
    const last = h.wals.at(-1)!;
    const cut = last.subarray(0, last.length - frame);
    expect((cut.length - WAL_HEADER_SIZE) % frame).toBe(0);
    const wals = [...h.wals.slice(0, -1), cut];
    const want = sqliteResult(h, wals, 'sqlite-cut');
    for (const limit of [undefined, 64 * 1024]) {
      const r = await applyWithApplier(h, wals, `cut-${limit ?? 'mem'}`, [50_000], limit);
      expect(r.bytes.equals(want)).toBe(true);
    }
    expect(want.equals(expected)).toBe(false);
  });

  it('refuses a WAL whose page size is not the snapshot’s', async () => {
    const path = join(h.dir, 'mismatch.db');
    copyFileSync(join(h.dir, 'sqlite.db'), path);
    const handle = await open(path, 'r+');
    const applier = new WalApplier(handle, 1, { pageSize: 1024, spillPath: `${path}-spill` });
    try {
      applier.beginIndex('wal index gen/00000001');
      expect(() => applier.update(h.wals[0]!.subarray(0, 8192))).toThrow(
        /wal index gen\/00000001 has page size 4096 but the snapshot has 1024/,
      );
    } finally {
      applier.close();
      await handle.close();
    }
  });
});
