import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import {
  WAL_MAGIC_BE,
  WalScanner,
  calcWalSize,
  frameAlign,
  parseWalFrameHeader,
  parseWalHeader,
  walChecksum,
  walFrameChecksum,
} from '../../../src/sqlite/wal-format.js';
import { isReplicateError } from '../../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-wal-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A real WAL written by SQLite: 3 transactions on a 4 KiB-page database. */
function realWal(): Buffer {
  const path = join(dir, `w${Math.random()}.db`);
  const db = new Database(path);
  db.pragma('journal_mode = wal');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE t (v TEXT)');
  db.prepare('INSERT INTO t VALUES (?)').run('a'.repeat(5000));
  db.prepare('INSERT INTO t VALUES (?)').run('b');
  copyFileSync(`${path}-wal`, `${path}.copy`);
  db.close();
  return readFileSync(`${path}.copy`);
}

/** The error `fn` throws; fails the test when it throws nothing. */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw, got a return');
}

describe('WAL header and checksum', () => {
  it("parses SQLite's own WAL and validates every frame", () => {
    const wal = realWal();
    const h = parseWalHeader(wal);
    expect(h.pageSize).toBe(4096);
    const scanner = new WalScanner();
    scanner.update(wal);
    const r = scanner.result();
    expect(r.stopReason).toBeUndefined();
    expect(r.validSize).toBe(wal.length);
    expect(r.committedSize).toBe(wal.length);
    expect(r.frames).toBe((wal.length - 32) / 4120);
    const last = parseWalFrameHeader(wal.subarray(wal.length - 4120));
    expect(last.commit).toBeGreaterThan(0);
  });

  it('computes big-endian checksums as SQLite defines them', () => {
    // Re-encode a header with the big-endian magic and check the round trip of our own checksum.
    const hdr = Buffer.alloc(32);
    hdr.writeUInt32BE(WAL_MAGIC_BE, 0);
    hdr.writeUInt32BE(3007000, 4);
    hdr.writeUInt32BE(4096, 8);
    hdr.writeUInt32BE(7, 12);
    hdr.writeUInt32BE(0xdeadbeef, 16);
    hdr.writeUInt32BE(0x01020304, 20);
    // Reference: words read big-endian, s0 += a + s1; s1 += b + s0.
    let s0 = 0;
    let s1 = 0;
    for (let i = 0; i < 24; i += 8) {
      s0 = (s0 + hdr.readUInt32BE(i) + s1) >>> 0;
      s1 = (s1 + hdr.readUInt32BE(i + 4) + s0) >>> 0;
    }
    const [c1, c2] = walChecksum(true, hdr.subarray(0, 24), [0, 0]);
    expect([c1, c2]).toEqual([s0, s1]);
    hdr.writeUInt32BE(c1, 24);
    hdr.writeUInt32BE(c2, 28);
    expect(parseWalHeader(hdr).bigEndianChecksum).toBe(true);
    // The unaligned path gives the same answer.
    const shifted = Buffer.alloc(25);
    hdr.copy(shifted, 1, 0, 24);
    expect(walChecksum(true, shifted.subarray(1), [0, 0])).toEqual([c1, c2]);
  });

  it('rejects a bad magic, a bad header checksum and a short header with INVALID_WAL, naming the source', () => {
    const wal = realWal();
    const bad = Buffer.from(wal.subarray(0, 32));
    bad[3] = 0x99;
    const badSum = Buffer.from(wal.subarray(0, 32));
    badSum[20] = badSum[20]! ^ 1;
    const cases: [Buffer, RegExp][] = [
      [bad, /^reading shadow wal x header: invalid wal header magic 0x377f0699$/],
      [badSum, /^reading shadow wal x header: invalid header checksum$/],
      [wal.subarray(0, 10), /^reading shadow wal x header: only 10 of 32 bytes$/],
      [Buffer.alloc(0), /^reading shadow wal x header: only 0 of 32 bytes$/],
    ];
    for (const [bytes, message] of cases) {
      const err = thrownBy(() => parseWalHeader(bytes, 'shadow wal x'));
      expect(isReplicateError(err, 'INVALID_WAL'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(message);
    }
    // The 32 bytes alone are enough: a longer buffer is read only up to the header.
    expect(parseWalHeader(Buffer.concat([wal.subarray(0, 32), Buffer.alloc(5)])).pageSize).toBe(4096);
  });

  it('stops at a flipped bit inside a frame, and reports partial frames', () => {
    const wal = realWal();
    const damaged = Buffer.from(wal);
    damaged[32 + 4120 + 24 + 100] = damaged[32 + 4120 + 24 + 100]! ^ 0x10;
    const s = new WalScanner();
    for (let i = 0; i < damaged.length; i += 1000) s.update(damaged.subarray(i, i + 1000));
    const r = s.result();
    expect(r.stopReason).toBe(`checksum mismatch at offset ${32 + 4120}`);
    expect(r.validSize).toBe(32 + 4120);

    const s2 = new WalScanner();
    s2.update(wal.subarray(0, wal.length - 100));
    expect(s2.result().stopReason).toMatch(/partial frame/);
  });

  it('checks a frame in place as walChecksum does, in both byte orders, wherever it sits', () => {
    const pageSize = 1024;
    const frame = Buffer.alloc(24 + pageSize);
    for (let i = 0; i < frame.length; i++) frame[i] = (i * 131 + 7) & 0xff;
    for (const bigEndian of [false, true]) {
      for (const seed of [
        [0, 0],
        [0xdeadbeef, 0x80000001],
      ] as const) {
        const want = walChecksum(bigEndian, frame.subarray(24), walChecksum(bigEndian, frame.subarray(0, 8), seed));
        for (const word of [0, 1, 7]) {
          const buf = new Uint32Array(word + frame.length / 4 + 3);
          Buffer.from(buf.buffer).set(frame, word * 4);
          const sum = Uint32Array.of(seed[0], seed[1]);
          walFrameChecksum(bigEndian, buf, word, pageSize, sum);
          expect([sum[0], sum[1]], `bigEndian=${bigEndian} word=${word}`).toEqual(want);
        }
      }
    }
  });

  it('scans the same whatever the chunks and their alignment, damaged or not', () => {
    const wal = realWal();
    const damaged = Buffer.from(wal);
    damaged[32 + 2 * 4120 + 24 + 9] = damaged[32 + 2 * 4120 + 24 + 9]! ^ 0x01;
    for (const bytes of [wal, damaged]) {
      const scan = (size: number, offset: number) => {
        const pages: string[] = [];
        const s = new WalScanner('wal', {
          frame: (pgno, b, start) =>
            pages.push(
              `${pgno}:${b
                .subarray(start, start + 4096)
                .toString('base64')
                .slice(0, 40)}`,
            ),
          commit: (dbSize) => pages.push(`commit ${dbSize}`),
        });
        for (let i = 0; i < bytes.length; i += size) {
          const piece = bytes.subarray(i, i + size);
          const chunk = Buffer.from(new ArrayBuffer(piece.length + offset), offset, piece.length);
          chunk.set(piece);
          s.update(chunk);
        }
        const { committedPages, ...r } = s.result();
        return { ...r, committedPages: [...committedPages], pages };
      };
      const want = scan(bytes.length, 0);
      expect(want.pages.length).toBeGreaterThan(0);
      for (const [size, offset] of [
        [bytes.length, 1],
        [4120, 2],
        [1001, 0],
        [1001, 3],
        // Chunks longer than a frame that leave the next whole frame off a word boundary inside them.
        [10_001, 0],
        [7, 0],
      ] as const) {
        expect(scan(size, offset), `chunks of ${size} at offset ${offset}`).toEqual(want);
      }
      if (bytes === damaged) expect(want.stopReason).toBe(`checksum mismatch at offset ${32 + 2 * 4120}`);
      else expect(want.stopReason).toBeUndefined();
    }
  });

  it('aligns sizes to frames', () => {
    expect(frameAlign(0, 4096)).toBe(0);
    expect(frameAlign(31, 4096)).toBe(0);
    expect(frameAlign(32, 4096)).toBe(32);
    expect(frameAlign(32 + 4120 * 3 + 17, 4096)).toBe(32 + 4120 * 3);
    expect(calcWalSize(4096, 1000)).toBe(4_120_032);
  });
});
