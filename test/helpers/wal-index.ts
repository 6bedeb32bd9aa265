/**
 * The wal-index (the -shm) in states SQLite itself leaves behind but no test can time from outside.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { parseWalHeader, walChecksum } from '../../src/sqlite/wal-format.js';

/**
 * What SQLite's walRestartHdr does to the wal-index (the -shm) when a writer restarts the WAL, and no
 * more: the writer stopped before writing the new header into the -wal. Fields (sqlite3 wal.c, native
 * byte order, little-endian here): WalIndexHdr — iChange at 8, mxFrame at 16, aSalt at 32 (the WAL
 * header's big-endian bytes), aCksum at 40 over the 40 bytes before it — in two copies, at 0 and 48;
 * then WalCkptInfo at 96 — nBackfill, aReadMark[0..4], aLock[8], nBackfillAttempted at 128.
 * Done by another process: closing a descriptor of the -shm drops every POSIX lock this process holds
 * on it, SQLite's own included, and the next connection to open it would then run recovery.
 * Returns the new cycle's salts (8 bytes, as the WAL header will hold them).
 */
export function publishRestartWithoutHeader(shmPath: string): Buffer {
  const code = `
    const { openSync, readSync, writeSync, closeSync } = require('node:fs');
    const fd = openSync(process.argv[1], 'r+');
    const h = Buffer.alloc(48);
    readSync(fd, h, 0, 48, 0);
    h.writeUInt32LE((h.readUInt32LE(8) + 1) >>> 0, 8);
    h.writeUInt32LE(0, 16);
    h.writeUInt32BE((h.readUInt32BE(32) + 1) >>> 0, 32);
    require('node:crypto').randomBytes(4).copy(h, 36);
    let s1 = 0, s2 = 0;
    for (let i = 0; i < 40; i += 8) {
      s1 = (s1 + h.readUInt32LE(i) + s2) >>> 0;
      s2 = (s2 + h.readUInt32LE(i + 4) + s1) >>> 0;
    }
    h.writeUInt32LE(s1, 40);
    h.writeUInt32LE(s2, 44);
    writeSync(fd, h, 0, 48, 48);
    writeSync(fd, h, 0, 48, 0);
    const info = Buffer.alloc(24); // nBackfill 0, aReadMark[0] 0, aReadMark[1] 0, the rest unused
    for (let i = 2; i < 5; i++) info.writeUInt32LE(0xffffffff, 4 + 4 * i);
    writeSync(fd, info, 0, info.length, 96);
    writeSync(fd, Buffer.alloc(4), 0, 4, 128);
    closeSync(fd);
    process.stdout.write(h.subarray(32, 40).toString('hex'));
  `;
  return Buffer.from(execFileSync(process.execPath, ['-e', code, shmPath], { encoding: 'utf8' }), 'hex');
}

/**
 * What a writer that restarted the WAL (publishRestartWithoutHeader) writes next and then never publishes,
 * killed before its commit reached the wal-index: the new cycle's header (`salts`) and one commit frame,
 * with a valid checksum chain, of page `pgno` (bytes no page holds) in a database of `dbPages` pages. SQLite never counts it as committed while
 * the wal-index lives; the next writer overwrites it. The -wal carries no SQLite lock: written in place.
 */
export function writeUnpublishedFrame(walPath: string, salts: Buffer, pgno: number, dbPages: number): void {
  const header = writeRestartHeader(walPath, salts);
  const { checksum1, checksum2 } = parseWalHeader(header);
  // A commit frame: `dbPages` is the database's size in pages after it.
  const [frame] = walFrame(header, [checksum1, checksum2], pgno, dbPages, 0x5a);
  const fd = openSync(walPath, 'r+');
  try {
    writeSync(fd, frame, 0, frame.length, 32);
  } finally {
    closeSync(fd);
  }
}

/**
 * The new cycle's header alone, as a writer that restarted the WAL (publishRestartWithoutHeader) writes it
 * before its first frame (and fsyncs it, where a kill lands most often): the old header with the next
 * checkpoint sequence, `salts` and its checksum; every frame behind it left as it was. Returns the header.
 */
export function writeRestartHeader(walPath: string, salts: Buffer): Buffer {
  const fd = openSync(walPath, 'r+');
  try {
    const header = Buffer.alloc(32);
    readSync(fd, header, 0, 32, 0);
    header.writeUInt32BE((parseWalHeader(header).checkpointSeq + 1) >>> 0, 12);
    salts.copy(header, 16);
    sealWalHeader(header);
    writeSync(fd, header, 0, 32, 0);
    return header;
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a WAL header's checksum (bytes 24-31) over its first 24 bytes, in the byte order its magic names
 * (0x377f0683: big-endian words), as SQLite does when it writes a header. Returns the header.
 */
export function sealWalHeader(header: Buffer): Buffer {
  const sum = walChecksum((header.readUInt32BE(0) & 1) === 1, header.subarray(0, 24), [0, 0]);
  header.writeUInt32BE(sum[0], 24);
  header.writeUInt32BE(sum[1], 28);
  return header;
}

/**
 * A frame of the cycle `header` names (its salts, its byte order), chained on `prev`: the header's
 * checksum for the cycle's first frame, else the frame before's. Page `pgno`, every byte `fill`; `commit`
 * is 0, or the database's size in pages after this commit frame. Returns the frame and its checksum (the
 * next frame's `prev`).
 */
export function walFrame(header: Buffer, prev: [number, number], pgno: number, commit: number, fill: number): [Buffer, [number, number]] {
  const h = parseWalHeader(header);
  const frame = Buffer.alloc(24 + h.pageSize, fill);
  frame.writeUInt32BE(pgno, 0);
  frame.writeUInt32BE(commit, 4);
  header.copy(frame, 8, 16, 24);
  let sum = walChecksum(h.bigEndianChecksum, frame.subarray(0, 8), prev);
  sum = walChecksum(h.bigEndianChecksum, frame.subarray(24), sum);
  frame.writeUInt32BE(sum[0], 16);
  frame.writeUInt32BE(sum[1], 20);
  return [frame, sum];
}
