/**
 * The least a restore written for Node does, as a bench:restore variant ("node floor"): start Node, read
 * the snapshot object, decode its LZ4 blocks with liblz4 (the same native decoder as ours) on one thread,
 * write each block, fsync. No WAL, no checksum, no check, no module beyond `node:fs` and the binding: it
 * is not a restore (its output is not checked), but it is a lower bound for any restore in Node on the
 * same machine, start-up included, to set against Litestream's time.
 *
 *   node dist/bench/lib/node-floor-restore.js <snapshot.lz4> <out>
 *   node dist/bench/lib/node-floor-restore.js --s3 <endpoint> <bucket> <key> <out>
 *
 * With --s3 the snapshot is one GetObject through the AWS SDK (@aws-sdk/client-s3, the S3 client a
 * restore in Node uses, loaded as it would be, with static credentials) and its body decoded as it
 * arrives: the floor of a restore from S3 in Node, SDK load and first request included, without the
 * listing a real restore needs first.
 *
 * Understands the frames Litestream writes (independent blocks; optional content size, block checksums
 * and content checksum, which it skips).
 */
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
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

async function decodeInto(read: ReadFull, outFd: number): Promise<void> {
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
  for (let position = 0; ;) {
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
    for (let off = 0; off < block.length;) off += writeSync(outFd, block, off, block.length - off, position + off);
    position += block.length;
  }
  fsyncSync(outFd);
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
    } finally {
      closeSync(outFd);
      s3.destroy();
    }
    return;
  }
  const [input, output] = args;
  if (!input || !output) throw new Error('usage: node-floor-restore <snapshot.lz4> <out>');
  const inFd = openSync(input, 'r');
  const outFd = openSync(output, 'w');
  try {
    await decodeInto(fileReader(inFd), outFd);
  } finally {
    closeSync(inFd);
    closeSync(outFd);
  }
}

await main();
