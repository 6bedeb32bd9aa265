/**
 * The wal-index (the -shm) in states SQLite itself leaves behind but no test can time from outside.
 */
import { execFileSync } from 'node:child_process';

/**
 * What SQLite's walRestartHdr does to the wal-index (the -shm) when a writer restarts the WAL, and no
 * more: the writer stopped before writing the new header into the -wal. Fields (sqlite3 wal.c, native
 * byte order, little-endian here): WalIndexHdr — iChange at 8, mxFrame at 16, aSalt at 32 (the WAL
 * header's big-endian bytes), aCksum at 40 over the 40 bytes before it — in two copies, at 0 and 48;
 * then WalCkptInfo at 96 — nBackfill, aReadMark[0..4], aLock[8], nBackfillAttempted at 128.
 * Done by another process: closing a descriptor of the -shm drops every POSIX lock this process holds
 * on it, SQLite's own included, and the next connection to open it would then run recovery.
 */
export function publishRestartWithoutHeader(shmPath: string): void {
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
  `;
  execFileSync(process.execPath, ['-e', code, shmPath]);
}
