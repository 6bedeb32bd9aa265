/**
 * The least a restore written for Node does, as a bench:restore variant ("node floor"): start Node, read
 * the snapshot object, decode its LZ4 blocks with liblz4 (the same native decoder as ours) on one thread,
 * write each block, fsync. No WAL, no checksum, no check, no module beyond `node:fs` and the binding: it
 * is not a restore (its output is not checked), but it is a lower bound for any restore in Node on the
 * same machine, start-up included, to set against Litestream's time.
 *
 *   node dist/bench/lib/node-floor-restore.js <snapshot.lz4> <out> [--wal [--check]]
 *   node dist/bench/lib/node-floor-restore.js --s3 <endpoint> <bucket> <key> <out>
 *
 * With --wal, the WAL segments too (the generation's `wal/<index>_<offset>.wal.lz4` from the snapshot's
 * index on, in order; offset 0 starts an index): decoded
 * the same way, every frame's page written in place as it comes (a replica holds only committed frames,
 * so no transaction is held back), the file cut to the last commit's size, one fsync at the end. With
 * --check, each frame's salts and SQLite's cumulative checksum are checked first (what a restore that
 * keeps SQLite's frame checks cannot skip). Its output is a restored database: the bench checks it.
 *
 * With --s3 the snapshot is one GetObject through the AWS SDK (@aws-sdk/client-s3, the S3 client a
 * restore in Node uses, loaded as it would be, with static credentials) and its body decoded as it
 * arrives: the floor of a restore from S3 in Node, SDK load and first request included, without the
 * listing a real restore needs first.
 *
 * Understands the frames Litestream writes (independent blocks; optional content size, block checksums
 * and content checksum, which it skips).
 */
import { basename, dirname, join } from 'node:path';
import { closeSync, fsyncSync, ftruncateSync, openSync, readdirSync, readSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';

const lz4 = createRequire(import.meta.url)('lz4/build/Release/lz4.node') as { uncompress(input: Buffer, output: Buffer): number };

const BLOCK_MAX = [0, 0, 0, 0, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

/** Fills `buf[0, length)` from the snapshot; throws if it ends first. */
type ReadFull = (buf: Buffer, length: number) => Promise<void>;

function fileReader(fd: number): ReadFull {
  return async (buf, length) => {
    for (let at = 0; at < length;) {
      const n = readSync(fd, buf, at, length - at, null);
      if (n === 0) throw new Error('snapshot is truncated');
      at += n;
    }
  };
}

/** Reads from a stream's chunks as they come (no buffering beyond the chunk in hand). */
function streamReader(body: AsyncIterable<Uint8Array>): ReadFull {
  const it = body[Symbol.asyncIterator]();
  let chunk: Buffer = Buffer.alloc(0);
  return async (buf, length) => {
    for (let at = 0; at < length;) {
      if (chunk.length === 0) {
        const next = await it.next();
        if (next.done) throw new Error('snapshot is truncated');
        chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      }
      const n = Math.min(chunk.length, length - at);
      chunk.copy(buf, at, 0, n);
      chunk = chunk.subarray(n);
      at += n;
    }
  };
}

/** Decodes one LZ4 frame, handing each block's bytes (valid during the call) to `sink`. */
async function decodeFrame(read: ReadFull, sink: (block: Buffer) => void): Promise<void> {
  const head = Buffer.alloc(19);
  await read(head, 6);
  if (head.readUInt32LE(0) !== 0x184d2204) throw new Error('not an LZ4 frame');
  const flg = head[4]!;
  const blockMax = BLOCK_MAX[(head[5]! >> 4) & 7]!;
  // The rest of the descriptor: content size (8), dictionary id (4), header checksum (1).
  const rest = ((flg & 0x08) !== 0 ? 8 : 0) + ((flg & 0x01) !== 0 ? 4 : 0) + 1;
  await read(head, rest);
  const blockChecksums = (flg & 0x10) !== 0;
  const src = Buffer.allocUnsafe(blockMax);
  const dst = Buffer.allocUnsafe(blockMax);
  const word = Buffer.alloc(4);
  for (;;) {
    await read(word, 4);
    const size = word.readUInt32LE(0);
    if (size === 0) break;
    const length = size & 0x7fffffff;
    await read(src, length);
    let block: Buffer;
    if ((size & 0x80000000) !== 0) block = src.subarray(0, length);
    else {
      const n = lz4.uncompress(src.subarray(0, length), dst);
      if (n < 0) throw new Error('a block does not decode');
      block = dst.subarray(0, n);
    }
    if (blockChecksums) await read(word, 4);
    sink(block);
  }
}

function writeAt(fd: number, buf: Buffer, position: number): void {
  for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off, position + off);
}

async function decodeInto(read: ReadFull, outFd: number): Promise<void> {
  let position = 0;
  await decodeFrame(read, (block) => {
    writeAt(outFd, block, position);
    position += block.length;
  });
}

/** SQLite's WAL checksum over `data` (a multiple of 8 bytes), words in the byte order `be` names. */
function walChecksum(be: boolean, data: Buffer, s: [number, number]): [number, number] {
  let s0 = s[0] | 0;
  let s1 = s[1] | 0;
  if (data.byteOffset % 4 === 0 && !be) {
    // Aligned words on this little-endian host: read in place (what ours does too).
    const w = new Uint32Array(data.buffer, data.byteOffset, data.length >>> 2);
    for (let i = 0; i < w.length; i += 2) {
      s0 = (s0 + w[i]! + s1) | 0;
      s1 = (s1 + w[i + 1]! + s0) | 0;
    }
  } else {
    for (let i = 0; i < data.length; i += 8) {
      s0 = (s0 + (be ? data.readUInt32BE(i) : data.readUInt32LE(i)) + s1) | 0;
      s1 = (s1 + (be ? data.readUInt32BE(i + 4) : data.readUInt32LE(i + 4)) + s0) | 0;
    }
  }
  return [s0 >>> 0, s1 >>> 0];
}

/**
 * The WAL segments applied as they decode: frames reassembled across blocks and segments of an index,
 * each page written at its place. Returns the database size in pages after the last commit (0: none).
 */
async function applyWal(segments: string[], outFd: number, check: boolean): Promise<number> {
  let lastDbSize = 0;
  let frame: Buffer | undefined;
  let fill = 0;
  let header = Buffer.alloc(0);
  let be = false;
  let salts = Buffer.alloc(8);
  let sum: [number, number] = [0, 0];
  let pageSize = 0;
  const onFrame = (f: Buffer) => {
    if (check) {
      if (!f.subarray(8, 16).equals(salts)) throw new Error('salt mismatch');
      sum = walChecksum(be, f.subarray(0, 8), sum);
      sum = walChecksum(be, f.subarray(24), sum);
      if (sum[0] !== f.readUInt32BE(16) || sum[1] !== f.readUInt32BE(20)) throw new Error('checksum mismatch');
    }
    writeAt(outFd, f.subarray(24), (f.readUInt32BE(0) - 1) * pageSize);
    const commit = f.readUInt32BE(4);
    if (commit !== 0) lastDbSize = commit;
  };
  for (const path of segments) {
    if (/_0{8}\.wal\.lz4$/.test(basename(path))) {
      header = Buffer.alloc(0); // a new index: its header first
      fill = 0;
    }
    const fd = openSync(path, 'r');
    try {
      await decodeFrame(fileReader(fd), (block) => {
        let pos = 0;
        if (header.length < 32) {
          const n = Math.min(32 - header.length, block.length);
          header = Buffer.concat([header, block.subarray(0, n)]);
          pos = n;
          if (header.length < 32) return;
          be = header.readUInt32BE(0) === 0x377f0683;
          pageSize = header.readUInt32BE(8);
          salts = Buffer.from(header.subarray(16, 24));
          sum = [header.readUInt32BE(24), header.readUInt32BE(28)];
          if (frame?.length !== 24 + pageSize) frame = Buffer.allocUnsafe(24 + pageSize);
        }
        const f = frame!;
        while (pos < block.length) {
          if (fill === 0 && block.length - pos >= f.length) {
            onFrame(block.subarray(pos, pos + f.length));
            pos += f.length;
            continue;
          }
          const n = Math.min(f.length - fill, block.length - pos);
          block.copy(f, fill, pos, pos + n);
          fill += n;
          pos += n;
          if (fill === f.length) {
            fill = 0;
            onFrame(f);
          }
        }
      });
    } finally {
      closeSync(fd);
    }
  }
  if (lastDbSize > 0) ftruncateSync(outFd, lastDbSize * pageSize);
  return lastDbSize;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--s3') {
    const [, endpoint, bucket, key, output] = args;
    if (!endpoint || !bucket || !key || !output) throw new Error('usage: node-floor-restore --s3 <endpoint> <bucket> <key> <out>');
    const { S3Client, GetObjectCommand } = await import('@aws-sdk/client-s3');
    const s3 = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? '', secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? '' },
    });
    const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const outFd = openSync(output, 'w');
    try {
      await decodeInto(streamReader(r.Body as AsyncIterable<Uint8Array>), outFd);
      fsyncSync(outFd);
    } finally {
      closeSync(outFd);
      s3.destroy();
    }
    return;
  }
  const [input, output, ...rest] = args;
  if (!input || !output) throw new Error('usage: node-floor-restore <snapshot.lz4> <out> [--wal [--check]]');
  const withWal = rest.includes('--wal');
  const check = rest.includes('--check');
  // generations/<gen>/snapshots/<index>.snapshot.lz4 -> generations/<gen>/wal/<index>_<offset>.wal.lz4, the
  // fixed-width hex names sorting in order.
  const walDir = join(dirname(dirname(input)), 'wal');
  const from = basename(input).slice(0, 8);
  const segments = withWal
    ? readdirSync(walDir)
        .filter((f) => f.endsWith('.wal.lz4') && f.slice(0, 8) >= from)
        .sort()
        .map((f) => join(walDir, f))
    : [];
  const inFd = openSync(input, 'r');
  const outFd = openSync(output, 'w');
  try {
    await decodeInto(fileReader(inFd), outFd);
    if (withWal) await applyWal(segments, outFd, check);
    fsyncSync(outFd);
  } finally {
    closeSync(inFd);
    closeSync(outFd);
  }
}

await main();
