/**
 * copyToShadow writes only committed frames (never an uncommitted tail, whatever its size), and
 * repairShadow cuts a shadow back to its last commit — the two halves of "a SIGKILL at any instruction
 * leaves a shadow that ends at a commit".
 */
import { appendFileSync, copyFileSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { copyToShadow } from '../../../src/shipper/shadow-copy.js';
import { initShadow, oldCycleEndedAtShadow, readWalHeaderBytesSync, repairShadow } from '../../../src/shipper/shadow-wal.js';
import { WalFile } from '../../../src/shipper/wal-file.js';
import { WalScanner } from '../../../src/sqlite/wal-format.js';
import { tempDirs } from '../../helpers/after-each.js';
import { sealWalHeader, walFrame, writeRestartHeader } from '../../helpers/wal-index.js';

const tmp = tempDirs('stn-shadow-unit-');

/** A WAL database with one committed transaction and, left open, a big one spilling frames into the WAL. */
function walWithOpenTransaction(rows: number) {
  const dir = tmp();
  const dbPath = join(dir, 'db.sqlite');
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  db.prepare('INSERT INTO t (v) VALUES (?)').run('committed');
  db.pragma('cache_size = 5');
  db.exec('BEGIN');
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  for (let i = 0; i < rows; i++) insert.run('u'.repeat(3000));
  const walPath = `${dbPath}-wal`;
  const scan = new WalScanner();
  scan.update(readFileSync(walPath));
  return { dir, db, walPath, committed: scan.result().committedSize, fileSize: statSync(walPath).size };
}

describe('WalFile (the -wal read through one descriptor kept across syncs)', () => {
  it("finds the cycle's salts just past the commit while a transaction is being written, and nothing once it is committed", () => {
    const w = walWithOpenTransaction(50);
    const wal = new WalFile(w.walPath);
    const salts = wal.header()!.subarray(16, 24);
    expect(wal.header()?.equals(readWalHeaderBytesSync(w.walPath)!)).toBe(true);
    expect(wal.frameSalts(w.committed)?.equals(salts)).toBe(true);
    w.db.exec('COMMIT');
    const end = statSync(w.walPath).size;
    expect(wal.frameSalts(end)).toBeUndefined();
    w.db.close();
    wal.close();
  });

  it('sees the file change in place (emptied, a new header), and follows the path to another file once told its inode', () => {
    const w = walWithOpenTransaction(5);
    w.db.exec('COMMIT');
    // Closing the last connection deletes the WAL: put its bytes back, a file nobody else has open.
    const bytes = readFileSync(w.walPath);
    w.db.close();
    writeFileSync(w.walPath, bytes);
    const wal = new WalFile(w.walPath);
    const first = wal.header()!;
    // Emptied (a TRUNCATE checkpoint) and given another header, on the same inode: read as it is now.
    truncateSync(w.walPath, 0);
    expect(wal.header()).toBeUndefined();
    const other = Buffer.from(first);
    other.writeUInt32BE(other.readUInt32BE(16) + 1, 16);
    writeFileSync(w.walPath, other);
    expect(wal.header()?.equals(other)).toBe(true);
    // Replaced by another file: the old descriptor stays on the old one until keepOnly is told the new inode.
    const replacement = join(w.dir, 'replacement');
    writeFileSync(replacement, first);
    renameSync(replacement, w.walPath);
    expect(wal.header()?.equals(other)).toBe(true);
    wal.keepOnly(statSync(w.walPath, { bigint: true }).ino);
    expect(wal.header()?.equals(first)).toBe(true);
    // Gone: nothing to read.
    rmSync(w.walPath);
    wal.keepOnly(undefined);
    expect(wal.header()).toBeUndefined();
    wal.close();
  });
});

describe('copyToShadow', () => {
  it.each([50, 2000])('copies up to the last commit and no further (%i uncommitted rows spilled)', (rows) => {
    const w = walWithOpenTransaction(rows);
    expect(w.fileSize, 'the open transaction spilled into the WAL').toBeGreaterThan(w.committed + 4 * 4120);
    const shadow = join(w.dir, 'shadow.wal');
    const copy = initShadow(w.walPath, shadow, readWalHeaderBytesSync(w.walPath)!);
    expect(copy.shadowSize).toBe(w.committed);
    expect(readFileSync(shadow).equals(readFileSync(w.walPath).subarray(0, w.committed))).toBe(true);
    // After the commit, the rest follows.
    w.db.exec('COMMIT');
    const scan = new WalScanner();
    scan.update(readFileSync(w.walPath));
    const next = copyToShadow(w.walPath, shadow);
    expect(next.shadowSize).toBe(scan.result().committedSize);
    expect(readFileSync(shadow).equals(readFileSync(w.walPath).subarray(0, next.shadowSize))).toBe(true);
    w.db.close();
  });

  it('stops before a commit that would end past maxSize, and says so', () => {
    const w = walWithOpenTransaction(10);
    w.db.exec('COMMIT');
    const shadow = join(w.dir, 'shadow.wal');
    const header = readWalHeaderBytesSync(w.walPath)!;
    writeFileSync(shadow, header);
    const copy = copyToShadow(w.walPath, shadow, { maxSize: w.committed });
    expect(copy.capped).toBe(true);
    expect(copy.shadowSize).toBe(w.committed);
    w.db.close();
  });
});

describe("copyToShadow up to SQLite's commit point (maxFrames: one pass)", () => {
  /** Commits of mixed sizes (one of 400 pages: larger than a copy's read buffer), and mxFrame after each. */
  function walOfCommits() {
    const dir = tmp();
    const dbPath = join(dir, 'db.sqlite');
    const db = new Database(dbPath);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0');
    db.pragma('cache_size = 5');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    const noop = db.prepare('PRAGMA wal_checkpoint(NOOP)');
    const marks: number[] = [];
    for (const rows of [1, 3, 120, 2, 400, 1, 1, 300, 5]) {
      db.transaction(() => {
        for (let i = 0; i < rows; i++) insert.run('p'.repeat(3000));
      })();
      marks.push((noop.get() as { log: number }).log);
    }
    return { dir, db, walPath: `${dbPath}-wal`, marks };
  }

  it('copies exactly the frames up to the commit point, in one copy or commit by commit', () => {
    const w = walOfCommits();
    const fsize = 4096 + 24;
    const wal = readFileSync(w.walPath);
    const header = readWalHeaderBytesSync(w.walPath)!;
    const whole = join(w.dir, 'whole.wal');
    initShadow(w.walPath, whole, header, { maxFrames: 0 });
    const last = w.marks.at(-1)!;
    const all = copyToShadow(w.walPath, whole, { maxFrames: last, verifyLastFrame: true });
    expect(all.shadowSize).toBe(32 + last * fsize);
    expect(readFileSync(whole).equals(wal.subarray(0, 32 + last * fsize))).toBe(true);

    const stepwise = join(w.dir, 'stepwise.wal');
    initShadow(w.walPath, stepwise, header, { maxFrames: 0 });
    for (const mark of w.marks) {
      const copy = copyToShadow(w.walPath, stepwise, { maxFrames: mark, verifyLastFrame: true });
      expect(copy.shadowSize).toBe(32 + mark * fsize);
      expect(statSync(stepwise).size).toBe(32 + mark * fsize);
    }
    expect(readFileSync(stepwise).equals(readFileSync(whole))).toBe(true);
    w.db.close();
  });

  it('stops at the commit point even where frames past it look committed', () => {
    const w = walOfCommits();
    const fsize = 4096 + 24;
    const shadow = join(w.dir, 'shadow.wal');
    initShadow(w.walPath, shadow, readWalHeaderBytesSync(w.walPath)!, { maxFrames: 0 });
    // Where a killed writer's frames would be: valid, committed-looking, but not published.
    const copy = copyToShadow(w.walPath, shadow, { maxFrames: w.marks[3]! });
    expect(copy.shadowSize).toBe(32 + w.marks[3]! * fsize);
    w.db.close();
  });

  it('a corrupt frame inside a large transaction: nothing of that transaction is written', () => {
    const w = walOfCommits();
    const fsize = 4096 + 24;
    // Damage a page in the middle of the 400-page transaction (commit 5) of a copy of the WAL.
    const copyPath = join(w.dir, 'damaged-wal');
    const bytes = Buffer.from(readFileSync(w.walPath));
    const bad = 32 + (w.marks[3]! + 200) * fsize + 24 + 100;
    bytes[bad] = bytes[bad]! ^ 0xff;
    writeFileSync(copyPath, bytes);
    const shadow = join(w.dir, 'shadow.wal');
    initShadow(copyPath, shadow, bytes.subarray(0, 32), { maxFrames: 0 });
    const copy = copyToShadow(copyPath, shadow, { maxFrames: w.marks.at(-1)! });
    expect(copy.shadowSize).toBe(32 + w.marks[3]! * fsize);
    expect(statSync(shadow).size).toBe(32 + w.marks[3]! * fsize);
    w.db.close();
  });
});

describe('repairShadow', () => {
  it('cuts uncommitted frames and a torn tail back to the last commit', () => {
    const w = walWithOpenTransaction(50);
    const shadow = join(w.dir, 'shadow.wal');
    initShadow(w.walPath, shadow, readWalHeaderBytesSync(w.walPath)!);
    // What a kill between "write frames" and "cut back" left in older versions, plus half a frame.
    appendFileSync(shadow, readFileSync(w.walPath).subarray(w.committed, w.committed + 3 * 4120 + 2000));
    const repaired = repairShadow(shadow)!;
    expect(repaired.size).toBe(w.committed);
    expect(repaired.cut).toBe(3 * 4120 + 2000);
    expect(statSync(shadow).size).toBe(w.committed);
    expect(repairShadow(shadow)!.cut, 'idempotent').toBe(0);
    w.db.close();
  });

  it('a shadow whose header is damaged is not repaired (the caller starts a new generation)', () => {
    const w = walWithOpenTransaction(5);
    const shadow = join(w.dir, 'shadow.wal');
    writeFileSync(shadow, Buffer.alloc(64, 7));
    expect(repairShadow(shadow)).toBeUndefined();
    expect(repairShadow(join(w.dir, 'missing.wal'))).toBeUndefined();
    w.db.close();
  });
});

describe('durability', () => {
  it('copyToShadow with fsync makes the whole file durable, also when it appends nothing', async () => {
    const { createRequire, syncBuiltinESMExports } = await import('node:module');
    // The CommonJS fs object is writable; syncBuiltinESMExports carries the change to ESM importers.
    const fs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
    const fsynced: number[] = [];
    const original = fs.fsyncSync;
    fs.fsyncSync = (fd: number) => {
      fsynced.push(fd);
      original(fd);
    };
    syncBuiltinESMExports();
    try {
      const w = walWithOpenTransaction(5);
      w.db.exec('COMMIT');
      const shadow = join(w.dir, 'shadow.wal');
      writeFileSync(shadow, readWalHeaderBytesSync(w.walPath)!);
      fsynced.length = 0;
      const first = copyToShadow(w.walPath, shadow, { fsync: false }); // a notification-triggered copy
      expect(first.appended).toBeGreaterThan(0);
      expect(fsynced).toEqual([]);
      const second = copyToShadow(w.walPath, shadow, { fsync: true }); // the poll: nothing new to append
      expect(second.appended).toBe(0);
      expect(fsynced.length, 'the bytes the first copy left unsynced are made durable').toBe(1);
      w.db.close();
    } finally {
      fs.fsyncSync = original;
      syncBuiltinESMExports();
    }
  });
});

describe('oldCycleEndedAtShadow', () => {
  it('a region past the shadow overwritten by the new cycle (a rolled-back spill) proves nothing: unknown', () => {
    const { db, walPath, shadow, shadowHeader } = stoppedAfterCopy(tmp('stn-follows-'));
    for (let i = 0; i < 20; i++) db.prepare("INSERT INTO u VALUES ('committed while stopped ' || ?)").run(i);
    db.pragma('wal_checkpoint(PASSIVE)');
    db.pragma('cache_size = 5');
    db.exec('BEGIN'); // restarts the WAL and spills frames past the shadow's end, then rolls back
    for (let i = 0; i < 200; i++) db.prepare('INSERT INTO t VALUES (randomblob(3000))').run();
    db.exec('ROLLBACK');
    db.prepare("INSERT INTO t VALUES ('small')").run();
    const real = readWalHeaderBytesSync(walPath)!;
    expect(real.readUInt32BE(16), 'the very next cycle').toBe((shadowHeader.readUInt32BE(16) + 1) >>> 0);
    expect(oldCycleEndedAtShadow(walPath, shadow, real, shadowHeader), 'the 20 commits past the shadow are in no shadow').toBe('unknown');
    db.close();
  });

  /** A database whose WAL cycle holds 30 commits, copied whole into a shadow; the replicator stops there. */
  function stoppedAfterCopy(dir: string): { db: Database.Database; walPath: string; shadow: string; shadowHeader: Buffer } {
    const dbPath = join(dir, 'c.db');
    const walPath = `${dbPath}-wal`;
    const db = new Database(dbPath);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0');
    db.exec('CREATE TABLE t (x); CREATE TABLE u (x)');
    for (let i = 0; i < 30; i++) db.prepare('INSERT INTO t VALUES (randomblob(3000))').run();
    const shadowHeader = readWalHeaderBytesSync(walPath)!;
    const shadow = join(dir, 'c.shadow');
    initShadow(walPath, shadow, shadowHeader);
    return { db, walPath, shadow, shadowHeader };
  }

  it('a frame of the old cycle past the shadow: no (commits made while stopped, then a restart)', () => {
    const { db, walPath, shadow, shadowHeader } = stoppedAfterCopy(tmp('stn-follows-'));
    for (let i = 0; i < 5; i++) db.prepare('INSERT INTO t VALUES (randomblob(3000))').run();
    db.pragma('wal_checkpoint(PASSIVE)');
    db.prepare("INSERT INTO t VALUES ('small')").run(); // restarts: a new cycle shorter than the old one
    expect(oldCycleEndedAtShadow(walPath, shadow, readWalHeaderBytesSync(walPath)!, shadowHeader)).toBe('no');
    db.close();
  });

  it('the file ends where the shadow ends: unknown once the new cycle has a frame; yes with the new header alone', () => {
    const { db, walPath, shadow, shadowHeader } = stoppedAfterCopy(tmp('stn-follows-'));
    db.pragma('wal_checkpoint(PASSIVE)');
    const restarted = join(tmp('stn-follows-'), 'restarted-wal');
    copyFileSync(walPath, restarted);
    // A restart killed after the new header (its fsync), before its first frame: every old frame still there.
    const salts = Buffer.alloc(8);
    salts.writeUInt32BE((shadowHeader.readUInt32BE(16) + 1) >>> 0, 0);
    salts.writeUInt32BE(0x1234abcd, 4);
    const header = writeRestartHeader(restarted, salts);
    expect(oldCycleEndedAtShadow(restarted, shadow, header, shadowHeader)).toBe('yes');
    // The same with a shadow that stopped one frame short: the old cycle's last frame lies past it.
    const short = `${shadow}-short`;
    copyFileSync(shadow, short);
    truncateSync(short, statSync(short).size - (24 + 4096));
    expect(oldCycleEndedAtShadow(restarted, short, header, shadowHeader)).toBe('no');
    // SQLite's own restart with one small commit: the file still ends where the shadow ends, its first frame is new.
    db.prepare("INSERT INTO t VALUES ('small')").run();
    const real = readWalHeaderBytesSync(walPath)!;
    expect(statSync(walPath).size).toBe(statSync(shadow).size);
    expect(oldCycleEndedAtShadow(walPath, shadow, real, shadowHeader)).toBe('unknown');
    db.close();
  });

  it('the new header alone, but a frame behind it not as the shadow has it: unknown (a shadow that copied frames SQLite never published)', () => {
    // The shadow: frame 1 committed, then a transaction (frames 2-4) a killed writer never published, copied
    // by a tool that takes frames by their checksums alone. The WAL: the next commit (frames 2-3) written
    // over it, checkpointed, then a restart killed after its header: frame 4 is still the leftover.
    const PS = 512;
    const header = (salt1: number, salt2: number, seq: number) => {
      const b = Buffer.alloc(32);
      b.writeUInt32BE(0x377f0682, 0);
      b.writeUInt32BE(3007000, 4);
      b.writeUInt32BE(PS, 8);
      b.writeUInt32BE(seq, 12);
      b.writeUInt32BE(salt1, 16);
      b.writeUInt32BE(salt2, 20);
      return sealWalHeader(b);
    };
    const old = header(100, 7, 1);
    const [f1, s1] = walFrame(old, [old.readUInt32BE(24), old.readUInt32BE(28)], 1, 1, 0x11);
    const [p2, sp2] = walFrame(old, s1, 2, 0, 0x22);
    const [p3, sp3] = walFrame(old, sp2, 3, 0, 0x33);
    const [p4] = walFrame(old, sp3, 4, 4, 0x44);
    const [t2, st2] = walFrame(old, s1, 2, 0, 0x55);
    const [t3] = walFrame(old, st2, 3, 3, 0x66);
    const next = header(101, 9, 2);
    const dir = tmp('stn-follows-');
    const shadow = join(dir, 'c.shadow');
    const walPath = join(dir, 'c.db-wal');
    writeFileSync(shadow, Buffer.concat([old, f1, p2, p3, p4]));
    writeFileSync(walPath, Buffer.concat([next, f1, t2, t3, p4]));
    expect(oldCycleEndedAtShadow(walPath, shadow, next, old)).toBe('unknown');
    writeFileSync(walPath, Buffer.concat([next, f1, p2, p3, p4]));
    expect(oldCycleEndedAtShadow(walPath, shadow, next, old), 'every frame as the shadow has it').toBe('yes');
  });
});
