/**
 * Decodes one LZ4 frame as a stream, a block (at most 4 MiB) at a time, so memory is a few blocks
 * whatever the object size. Independent blocks (Litestream's frames) go to liblz4; linked blocks, which
 * Litestream never writes, to lz4-napi, the one block codec that takes the previous 64 KiB as a
 * dictionary. The frame's headers and checksums are read and checked by lz4-frame-format.ts;
 * lz4-frame-to-file.ts decodes into a file on a worker thread instead.
 */
import { ByteReader } from './byte-reader.js';
import { liblz4 } from './liblz4.js';
import {
  blockDecodeFailure,
  checkBlockChecksum,
  corrupt,
  finishFrame,
  parseBlockHeader,
  readExact,
  readFrameHeader,
  type FrameHeader,
} from './lz4-frame-format.js';
import { hashInSlices, newHasher } from './xxh32.js';

export interface DecodeOptions {
  /** What is being decoded, for error messages (e.g. the object key). */
  label?: string;
  /**
   * Reuse a ring of this many output buffers instead of allocating one per block. Only for a consumer
   * that is done with every chunk before it pulls `reuseOutput` more (e.g. a writer with fewer writes
   * in flight): allocating 4 MiB per block makes the garbage collector, not the stream, decide memory.
   */
  reuseOutput?: number;
  /**
   * Decode every block into this one buffer (at least the frame's block size, else a ring is used): for
   * a consumer that is done with each chunk before it pulls the next, and that decodes many small
   * frames one after another (WAL segments), which would otherwise each get their own output buffer.
   */
  outputBuffer?: Buffer;
  /**
   * Where a compressed block that spans input chunks is gathered, kept (and grown) across frames: for a
   * caller that decodes many frames one after another (a restore's WAL segments), which would otherwise
   * allocate one such buffer per frame and leave them all to the garbage collector.
   */
  inputScratch?: { buffer?: Buffer };
}

/**
 * Decodes one LZ4 frame (skippable frames before it are skipped). Usable as a `stream.pipeline` stage.
 * Throws CORRUPT_OBJECT for bad magic, bad header checksum, truncation, a content checksum mismatch, a
 * block that does not decode, or trailing bytes after the frame (Litestream would silently ignore them,
 * which yields a malformed database).
 */
export function decodeLz4Frame(options: DecodeOptions = {}) {
  return async function* decode(source: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
    const reader = new ByteReader(source);
    try {
      yield* decodeFrame(reader, options.label, options.reuseOutput ?? 0, options.outputBuffer, options.inputScratch);
    } finally {
      await reader.close();
    }
  };
}

async function* decodeFrame(
  reader: ByteReader,
  label: string | undefined,
  reuseOutput: number,
  outputBuffer?: Buffer,
  inputScratch: { buffer?: Buffer } = {},
): AsyncGenerator<Buffer> {
  const frame = await readFrameHeader(reader, label);
  yield* decodeBlocks(reader, frame, label, reuseOutput, outputBuffer, inputScratch);
}

/** The blocks of a frame whose header was read, decoded on this thread, then the frame's end checked. */
export async function* decodeBlocks(
  reader: ByteReader,
  frame: FrameHeader,
  label: string | undefined,
  reuseOutput = 0,
  outputBuffer?: Buffer,
  inputScratch: { buffer?: Buffer } = {},
): AsyncGenerator<Buffer> {
  const { independent, blockMax } = frame;
  const hasher = await newHasher();
  const sizePrefix = Buffer.alloc(4);
  sizePrefix.writeUInt32LE(blockMax, 0);
  let history: Buffer | undefined; // last 64 KiB of output, for linked blocks
  let total = 0n;
  const ring: Buffer[] = [];
  let ringNext = 0;

  const emit = (out: Buffer): Buffer => {
    hashInSlices(hasher, out);
    total += BigInt(out.length);
    return out;
  };

  for (;;) {
    const header = (await readExact(reader, 4, label, 'block header')).readUInt32LE(0);
    if (header === 0) break;
    const { length, stored } = parseBlockHeader(header, frame, label);
    if (stored) {
      const data = await readExact(reader, length, label, 'block data');
      await checkBlockChecksum(reader, frame, data, label);
      if (!independent) history = tail64k(history, data);
      yield emit(data);
      continue;
    }
    if (independent) {
      // Compressed input is decoded at once, so one scratch buffer serves every block.
      if (!inputScratch.buffer || inputScratch.buffer.length < length) inputScratch.buffer = Buffer.allocUnsafe(length);
      const data = await readExact(reader, length, label, 'block data', inputScratch.buffer);
      await checkBlockChecksum(reader, frame, data, label);
      // Output: from the ring when the consumer allows it; else a fresh buffer (the consumer may still
      // hold the previous one) no bigger than the block can expand to (LZ4 output is at most ~255x its
      // input), so small segments stay small.
      let out: Buffer;
      if (outputBuffer && outputBuffer.length >= blockMax) {
        out = outputBuffer;
      } else if (reuseOutput > 0) {
        out = ring[ringNext] ??= Buffer.allocUnsafe(blockMax);
        ringNext = (ringNext + 1) % reuseOutput;
      } else {
        out = Buffer.allocUnsafe(Math.min(blockMax, length * 256 + 64));
      }
      const n = liblz4.uncompress(data, out);
      if (n < 0) throw corrupt(label, blockDecodeFailure(n));
      yield emit(out.subarray(0, n));
      continue;
    }
    // Linked blocks refer to the previous 64 KiB of output; only lz4-napi takes a dictionary.
    const prefixed = await reader.readPrefixed(length, sizePrefix);
    if (prefixed.length - sizePrefix.length < length) throw corrupt(label, 'object is truncated (unexpected end of data in block data)');
    await checkBlockChecksum(reader, frame, prefixed.subarray(sizePrefix.length), label);
    let out: Buffer;
    try {
      const { uncompress } = await import('lz4-napi'); // loaded only for this rare frame kind
      out = await uncompress(prefixed, history);
    } catch (err) {
      throw corrupt(label, 'block does not decode', err);
    }
    history = tail64k(history, out);
    yield emit(out);
  }
  await finishFrame(reader, frame, hasher.digest(), total, label);
}

function tail64k(history: Buffer | undefined, out: Buffer): Buffer {
  const WINDOW = 64 * 1024;
  if (out.length >= WINDOW) return Buffer.from(out.subarray(out.length - WINDOW));
  const joined = history ? Buffer.concat([history, out]) : out;
  return Buffer.from(joined.subarray(Math.max(0, joined.length - WINDOW)));
}
