/**
 * FrameChain against a chain computed frame by frame with walChecksum, on a WAL SQLite wrote: where it
 * stops, the checksum it carries, the last commit, from chunks on and off a 4-byte boundary.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { FrameChain } from '../../../src/shipper/frame-chain.js';
import { WAL_HEADER_SIZE, parseWalFrameHeader, parseWalHeader, walChecksum, type Checksum } from '../../../src/sqlite/wal-format.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-chain-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A WAL of several transactions, some of several frames, on 4 KiB pages. */
function realWal(): Buffer {
  const path = join(dir, 'w.db');
  const db = new Database(path);
  db.pragma('journal_mode = wal');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE t (v BLOB)');
  for (let i = 0; i < 6; i++) db.prepare('INSERT INTO t VALUES (randomblob(?))').run(3000 * i + 10);
  copyFileSync(`${path}-wal`, `${path}.copy`);
  db.close();
  return readFileSync(`${path}.copy`);
}

const FRAME = 24 + 4096;

function lastCommitIn(frames: { commit: boolean }[]): number {
  for (let i = frames.length - 1; i >= 0; i--) if (frames[i]!.commit) return i;
  return -1;
}

/** The chain after each frame and whether it commits, computed one frame at a time the plain way. */
function expectedChain(wal: Buffer): { sum: Checksum; commit: boolean }[] {
  const h = parseWalHeader(wal);
  let sum: Checksum = [h.checksum1, h.checksum2];
  const out = [];
  for (let at = WAL_HEADER_SIZE; at + FRAME <= wal.length; at += FRAME) {
    const frame = wal.subarray(at, at + FRAME);
    sum = walChecksum(h.bigEndianChecksum, frame.subarray(24), walChecksum(h.bigEndianChecksum, frame.subarray(0, 8), sum));
    out.push({ sum, commit: parseWalFrameHeader(frame).commit !== 0 });
  }
  return out;
}

/** The frames after the header fed to a new chain in chunks of `frames` frames, each `offset` bytes into its buffer. */
function run(wal: Buffer, frames: number, offset: number) {
  const h = parseWalHeader(wal);
  const chain = new FrameChain(h, WAL_HEADER_SIZE, [h.checksum1, h.checksum2], Infinity);
  for (let at = WAL_HEADER_SIZE; at < wal.length; at += frames * FRAME) {
    const piece = wal.subarray(at, Math.min(wal.length, at + frames * FRAME));
    const chunk = Buffer.from(new ArrayBuffer(piece.length + offset), offset, piece.length);
    chunk.set(piece);
    if (!chain.accept(chunk)) break;
  }
  return { end: chain.end, committed: chain.committed, sum: chain.sum, committedSum: chain.committedSum, stoppedBy: chain.stoppedBy };
}

describe('FrameChain', () => {
  const wal = realWal();
  const chain = expectedChain(wal);

  it('carries the checksum chain and the last commit as frame-by-frame walChecksum does', () => {
    expect(chain.length).toBeGreaterThan(6);
    const lastCommit = lastCommitIn(chain);
    const want = {
      end: WAL_HEADER_SIZE + chain.length * FRAME,
      committed: WAL_HEADER_SIZE + (lastCommit + 1) * FRAME,
      sum: chain.at(-1)!.sum,
      committedSum: chain[lastCommit]!.sum,
      stoppedBy: undefined,
    };
    for (const [frames, offset] of [
      [1000, 0],
      [1000, 1],
      [1, 2],
      [3, 0],
      [3, 3],
    ] as const) {
      expect(run(wal, frames, offset), `${frames} frames per chunk at offset ${offset}`).toEqual(want);
    }
  });

  it('stops before a damaged frame with the chain and the commit before it', () => {
    const bad = 4;
    const damaged = Buffer.from(wal);
    damaged[WAL_HEADER_SIZE + bad * FRAME + 24 + 500]! ^= 0x40;
    const lastCommit = lastCommitIn(chain.slice(0, bad));
    expect(lastCommit).toBeGreaterThanOrEqual(0);
    const want = {
      end: WAL_HEADER_SIZE + bad * FRAME,
      committed: WAL_HEADER_SIZE + (lastCommit + 1) * FRAME,
      sum: chain[bad - 1]!.sum,
      committedSum: chain[lastCommit]!.sum,
      stoppedBy: 'checksum mismatch',
    };
    for (const [frames, offset] of [
      [1000, 0],
      [1000, 1],
      [2, 0],
      [2, 2],
    ] as const) {
      expect(run(damaged, frames, offset), `${frames} frames per chunk at offset ${offset}`).toEqual(want);
    }
    // A salt from another WAL generation stops it the same way, as a salt mismatch.
    const resalted = Buffer.from(wal);
    const saltAt = WAL_HEADER_SIZE + bad * FRAME + 8;
    resalted.writeUInt32BE((resalted.readUInt32BE(saltAt) ^ 1) >>> 0, saltAt);
    expect(run(resalted, 1000, 1)).toEqual({ ...want, stoppedBy: 'salt mismatch' });
  });
});
