/**
 * The least a restore written for Node does, as a bench:restore variant ("node floor"): start Node, read
 * the snapshot object, decode its LZ4 blocks with liblz4 (the same native decoder as ours) on one thread,
 * write each block, fsync. No WAL, no checksum, no check, no module beyond `node:fs` and the binding: it
 * is not a restore (its output is not checked), but it is a lower bound for any restore in Node on the
 * same machine, start-up included, to set against Litestream's time.
 *
 *   node dist/bench/lib/node-floor-restore.js <snapshot.lz4> <out>
 *
 * Understands the frames Litestream writes (independent blocks; optional content size, block checksums
 * and content checksum, which it skips).
 */
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';

const lz4 = createRequire(import.meta.url)('lz4/build/Release/lz4.node') as { uncompress(input: Buffer, output: Buffer): number };

const BLOCK_MAX = [0, 0, 0, 0, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

function readFull(fd: number, buf: Buffer, length: number): void {
  for (let at = 0; at < length;) {
    const n = readSync(fd, buf, at, length - at, null);
    if (n === 0) throw new Error('snapshot is truncated');
    at += n;
  }
}

function main(): void {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) throw new Error('usage: node-floor-restore <snapshot.lz4> <out>');
  const inFd = openSync(input, 'r');
  const outFd = openSync(output, 'w');
  try {
    const head = Buffer.alloc(19);
    readFull(inFd, head, 6);
    if (head.readUInt32LE(0) !== 0x184d2204) throw new Error('not an LZ4 frame');
    const flg = head[4]!;
    const blockMax = BLOCK_MAX[(head[5]! >> 4) & 7]!;
    // The rest of the descriptor: content size (8), dictionary id (4), header checksum (1).
    const rest = ((flg & 0x08) !== 0 ? 8 : 0) + ((flg & 0x01) !== 0 ? 4 : 0) + 1;
    readFull(inFd, head, rest);
    const blockChecksums = (flg & 0x10) !== 0;
    const src = Buffer.allocUnsafe(blockMax);
    const dst = Buffer.allocUnsafe(blockMax);
    const word = Buffer.alloc(4);
    for (let position = 0; ;) {
      readFull(inFd, word, 4);
      const size = word.readUInt32LE(0);
      if (size === 0) break;
      const length = size & 0x7fffffff;
      readFull(inFd, src, length);
      let block: Buffer;
      if ((size & 0x80000000) !== 0) block = src.subarray(0, length);
      else {
        const n = lz4.uncompress(src.subarray(0, length), dst);
        if (n < 0) throw new Error('a block does not decode');
        block = dst.subarray(0, n);
      }
      if (blockChecksums) readFull(inFd, word, 4);
      for (let off = 0; off < block.length;) off += writeSync(outFd, block, off, block.length - off, position + off);
      position += block.length;
    }
    fsyncSync(outFd);
  } finally {
    closeSync(inFd);
    closeSync(outFd);
  }
}

main();
