/**
 * The seq write note (src/shipper/seq-write-note.ts) and the leaf-page reader it uses, against bytes
 * SQLite itself wrote: a cycle our seq write began is recognised, and each thing that would make it some
 * other write (value, page, shadow size, salts, a damaged frame) is refused.
 */
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { MetaDir } from '../../../src/meta/meta-dir.js';
import { seqWriteBeganCycle, takeSeqWriteNote, writeSeqWriteNote, type SeqWriteNote } from '../../../src/shipper/seq-write-note.js';
import { leafRowIntegers } from '../../../src/sqlite/table-leaf.js';
import { parseWalHeader } from '../../../src/sqlite/wal-format.js';
import { tempDirs } from '../../helpers/after-each.js';
import { sealWalHeader } from '../../helpers/wal-index.js';

const tmp = tempDirs('stn-seqnote-');
const dbs: Database.Database[] = [];
afterEach(() => {
  for (const d of dbs.splice(0)) d.close();
});

function openDb(path: string): Database.Database {
  const db = new Database(path);
  dbs.push(db);
  db.pragma('journal_mode = wal');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)');
  return db;
}

const SEQ_UPSERT = 'INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1';

describe('leafRowIntegers', () => {
  it('reads the seq row back out of the page SQLite wrote, for every integer encoding', async () => {
    const dir = tmp();
    const path = join(dir, 'leaf.db');
    const db = openDb(path);
    const root = Number(db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = '_litestream_seq'").pluck().get());
    const pageSize = Number(db.pragma('page_size', { simple: true }));
    // 0 and 1 have serial types of their own (8, 9); the rest take 1, 2, 3, 4, 6 and 8 bytes.
    for (const v of [
      0n,
      1n,
      2n,
      127n,
      -128n,
      300n,
      -40000n,
      8_000_000n,
      2n ** 31n + 5n,
      2n ** 40n,
      -(2n ** 47n),
      2n ** 62n,
      -(2n ** 63n),
    ]) {
      db.prepare('INSERT INTO _litestream_seq (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq').run(v);
      db.pragma('wal_checkpoint(TRUNCATE)');
      const file = readFileSync(path);
      const page = file.subarray((root - 1) * pageSize, root * pageSize);
      expect(leafRowIntegers(page, root, 1n), String(v)).toEqual([null, v]);
      expect(leafRowIntegers(page, root, 2n), 'no such row').toBeUndefined();
    }
    // Not a table leaf (page 1 is the schema's, its b-tree header past the database header): no row 1 of ours.
    expect(leafRowIntegers(readFileSync(path).subarray(0, pageSize), 1, 99n)).toBeUndefined();
    expect(leafRowIntegers(Buffer.alloc(pageSize), root, 1n), 'a zeroed page').toBeUndefined();
  });
});

/**
 * A database whose WAL cycle (the "old" one, copied aside as the shadow) was checkpointed, then restarted
 * by the seq write: what our checkpoint leaves when it is killed right after that write.
 */
async function seqRestart(): Promise<{
  dir: string;
  walPath: string;
  shadowPath: string;
  note: SeqWriteNote;
  real: Buffer;
  shadow: Buffer;
}> {
  const dir = tmp();
  const path = join(dir, 'app.db');
  const db = openDb(path);
  db.exec('CREATE TABLE t (x)');
  db.prepare(SEQ_UPSERT).run();
  const insert = db.prepare('INSERT INTO t VALUES (?)');
  for (let i = 0; i < 20; i++) insert.run('x'.repeat(2000));
  const walPath = `${path}-wal`;
  const shadowPath = join(dir, 'shadow.wal');
  copyFileSync(walPath, shadowPath);
  const ckpt = db.pragma('wal_checkpoint(PASSIVE)') as { log: number; checkpointed: number }[];
  expect(ckpt[0]!.checkpointed).toBe(ckpt[0]!.log);
  const page = Number(db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = '_litestream_seq'").pluck().get());
  const seq = BigInt(db.prepare('SELECT seq FROM _litestream_seq WHERE id = 1').pluck().get() as number) + 1n;
  db.prepare(SEQ_UPSERT).run(); // restarts the WAL: its first frame
  const shadow = readFileSync(shadowPath).subarray(0, 32);
  const real = readFileSync(walPath).subarray(0, 32);
  expect(real.equals(shadow), 'the WAL restarted').toBe(false);
  return {
    dir,
    walPath,
    shadowPath,
    note: { generation: 'g', index: 3, shadowSize: readFileSync(shadowPath).length, page, seq },
    real,
    shadow,
  };
}

describe('seqWriteBeganCycle', () => {
  it('recognises the cycle the announced seq write began', async () => {
    const r = await seqRestart();
    expect(seqWriteBeganCycle(r.walPath, r.shadowPath, r.note, r.shadow, r.real)).toBe(true);
  });

  it('refuses another value, another page, a shadow of another size, a cycle that is not the next, a damaged frame', async () => {
    const r = await seqRestart();
    const began = (note: SeqWriteNote, shadow = r.shadow, walPath = r.walPath) =>
      seqWriteBeganCycle(walPath, r.shadowPath, note, shadow, r.real);
    expect(began({ ...r.note, seq: r.note.seq + 1n }), 'a later seq write').toBe(false);
    expect(began({ ...r.note, seq: r.note.seq - 1n }), 'an earlier one').toBe(false);
    expect(began({ ...r.note, page: r.note.page + 1 }), 'another page').toBe(false);
    expect(began({ ...r.note, shadowSize: r.note.shadowSize - 4120 }), 'the shadow grew after the note').toBe(false);
    const notNext = Buffer.from(r.shadow);
    notNext.writeUInt32BE((notNext.readUInt32BE(16) + 7) >>> 0, 16); // salt-1 of a cycle further back
    sealWalHeader(notNext); // a valid header all the same
    expect(() => parseWalHeader(notNext)).not.toThrow();
    expect(began(r.note, notNext), 'not the very next cycle').toBe(false);
    const damaged = join(r.dir, 'damaged-wal');
    const bytes = readFileSync(r.walPath);
    bytes.writeUInt8(bytes.readUInt8(32 + 24 + 100) ^ 0xff, 32 + 24 + 100); // inside the first frame's page: its checksum no longer holds
    writeFileSync(damaged, bytes);
    expect(began(r.note, r.shadow, damaged), 'a frame whose checksum fails').toBe(false);
  });
});

describe('the note file', () => {
  it('is taken once, and a torn one proves nothing', async () => {
    const meta = new MetaDir(tmp());
    const note: SeqWriteNote = { generation: 'e5dbc2b57287757b', index: 7, shadowSize: 41232, page: 2, seq: 2n ** 40n };
    writeSeqWriteNote(meta, note);
    expect(takeSeqWriteNote(meta)).toEqual(note);
    expect(takeSeqWriteNote(meta), 'taken: gone').toBeUndefined();
    writeSeqWriteNote(meta, note);
    const path = join(meta.path, 'seq-write.json');
    writeFileSync(path, readFileSync(path).subarray(0, 20)); // killed while writing it
    expect(takeSeqWriteNote(meta)).toBeUndefined();
    expect(existsSync(path), 'removed all the same').toBe(false);
  });
});
