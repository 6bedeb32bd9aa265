/**
 * Streaming LZ4 frames in Litestream v0.3.13's profile, with bounded memory.
 *
 * This module writes and parses the frame format itself and hands single blocks (at most 4 MiB) to a
 * block codec, so memory is a few blocks whatever the object size. The block codec is liblz4 through the
 * `lz4` package's encodeBlock/decodeBlock, which write into buffers we allocate (and V8 accounts for).
 * lz4-napi, the first choice, returns buffers V8 does not account for: measured, RSS grew to 856 MB after
 * decoding 200 blocks of 4 MiB because the garbage collector never ran; liblz4 is also faster here
 * (decode ~3 GB/s, encode ~1.2 GB/s vs ~2.1 / ~0.7 GB/s). lz4-napi remains only for frames with linked
 * blocks (which need the previous 64 KiB as a dictionary); Litestream never writes those.
 *
 * Writer profile (what Litestream writes, and what it can read back — see docs/compatibility.md):
 *   magic 04 22 4D 18 | FLG 0x64 (v01, independent blocks, content checksum, NO block checksum)
 *   | BD 0x70 (4 MiB blocks) | HC 0xB9 | blocks… | end mark 0 | xxh32 of the whole payload.
 * Never set the block-checksum flag: Litestream's LZ4 library rejects it.
 *
 * This module and lz4-frame-to-file.ts (which decodes a frame's blocks on a worker thread) are the only
 * importers of the LZ4 libraries.
 */
import { createRequire } from 'node:module';
import xxhash from 'xxhash-wasm';
import { ReplicateError } from '../errors.js';
import { SpareBuffers } from './spare-buffers.js';

const FRAME_MAGIC = 0x184d2204;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
export const LZ4_BLOCK_SIZE = 4 * 1024 * 1024;
/** Litestream's exact frame header. */
export const LZ4_FRAME_HEADER = Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x64, 0x70, 0xb9]);
const BLOCK_UNCOMPRESSED_FLAG = 0x80000000;
const BLOCK_MAX_SIZES: Record<number, number> = { 4: 64 * 1024, 5: 256 * 1024, 6: 1024 * 1024, 7: 4 * 1024 * 1024 };

interface Liblz4 {
  /** LZ4_compress_default into output[start..end); returns the compressed size, 0 if it does not fit. */
  compress(input: Buffer, output: Buffer, start?: number, end?: number): number;
  /** LZ4_decompress_safe; returns the decoded size, negative for malformed input. */
  uncompress(input: Buffer, output: Buffer): number;
  compressBound(size: number): number;
}
// The package's native binding alone: its JS entry point also loads stream classes and a JS xxhash we do
// not use (~70 ms of start-up).
const liblz4 = createRequire(import.meta.url)('lz4/build/Release/lz4.node') as Liblz4;

export type Hasher = { update(input: Uint8Array): unknown; digest(): number };
let xxhashApi: ReturnType<typeof xxhash> | undefined;
export async function newHasher(): Promise<Hasher> {
  xxhashApi ??= xxhash();
  return (await xxhashApi).create32(0);
}

/**
 * The hasher copies its input into WebAssembly memory, which grows to the largest input and never
 * shrinks: fed 4 MiB blocks, every process would keep 4+ MiB for it. Slices keep that memory small.
 */
const HASH_SLICE = 256 * 1024;
export function hashInSlices(hasher: Hasher, data: Uint8Array): void {
  for (let at = 0; at < data.length; at += HASH_SLICE) hasher.update(data.subarray(at, at + HASH_SLICE));
}

/** xxh32 (seed 0) of a small buffer; used for the frame header checksum. */
async function xxh32(data: Uint8Array): Promise<number> {
  const h = await newHasher();
  h.update(data);
  return h.digest() >>> 0;
}

export interface EncodeOptions {
  /**
   * Compress every block into the same output buffer. Only for a consumer that is done with each
   * yielded chunk (has written or copied it) before it pulls the next, and with the last one before
   * the frame ends: a consumer that queues chunks would find them overwritten. Without it every block
   * gets a fresh output buffer.
   */
  reuseOutput?: boolean;
}

/**
 * The encoder's block and (with reuseOutput) output buffers, kept across frames: segments are uploaded
 * several times a second, and a fresh 4 MiB of each per segment was most of the replicator's garbage
 * (and, since glibc keeps what they were freed from, of its peak RSS). A frame takes what it needs and
 * gives it back when it ends; frames encoded at the same time each take their own.
 */
const encoderBuffers = new SpareBuffers(2, 4 + liblz4.compressBound(LZ4_BLOCK_SIZE));

/**
 * Encodes a byte stream as one LZ4 frame. Usable as a `stream.pipeline` stage:
 * `pipeline(source, encodeLz4Frame, destination)`.
 *
 * Each input chunk is done with before the next is pulled: a chunk that is a whole block by itself is
 * compressed from where it is, anything else is copied into one block buffer that is reused. So a
 * source may read into the same buffer every time (uploadShadowSegment does). The output is a fresh
 * buffer per block (consumers may queue it), or one buffer for them all with `reuseOutput`.
 */
export async function* encodeLz4Frame(source: AsyncIterable<Uint8Array>, options: EncodeOptions = {}): AsyncGenerator<Buffer> {
  const hasher = await newHasher();
  yield Buffer.from(LZ4_FRAME_HEADER);

  // Taken when first needed (a frame whose input comes in whole blocks never needs one), given back at
  // the end of the frame. Never given back if the frame is abandoned midway: then it is garbage.
  let block: Buffer | undefined;
  let output: Buffer | undefined;
  let filled = 0;
  const seal = (data: Buffer): Buffer => {
    hashInSlices(hasher, data);
    if (!options.reuseOutput) return compressBlock(data, freshOutput(data.length));
    output ??= encoderBuffers.take(4 + liblz4.compressBound(LZ4_BLOCK_SIZE));
    return compressBlock(data, output);
  };
  for await (const input of source) {
    const chunk = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    let pos = 0;
    while (pos < chunk.length) {
      if (filled === 0 && chunk.length - pos >= LZ4_BLOCK_SIZE) {
        yield seal(chunk.subarray(pos, pos + LZ4_BLOCK_SIZE));
        pos += LZ4_BLOCK_SIZE;
        continue;
      }
      block ??= encoderBuffers.take(LZ4_BLOCK_SIZE);
      const n = Math.min(chunk.length - pos, LZ4_BLOCK_SIZE - filled);
      chunk.copy(block, filled, pos, pos + n);
      filled += n;
      pos += n;
      if (filled === LZ4_BLOCK_SIZE) {
        filled = 0;
        yield seal(block.subarray(0, LZ4_BLOCK_SIZE)); // a spare can be larger than a block
      }
    }
  }
  if (filled > 0) yield seal(block!.subarray(0, filled));

  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(0, 0); // end mark
  trailer.writeUInt32LE(hasher.digest() >>> 0, 4);
  // Given back only here, once the consumer has pulled past the last block (with reuseOutput it is done
  // with it), and not in a `finally`: a frame ended early by an error gives nothing back.
  if (block) encoderBuffers.give(block);
  if (output) encoderBuffers.give(output);
  block = output = undefined;
  yield trailer;
}

/** A fresh output buffer for a block of `size` bytes (the consumer may queue it), no bigger than it can need. */
function freshOutput(size: number): Buffer {
  return Buffer.allocUnsafe(4 + Math.max(liblz4.compressBound(size), size));
}

/** One block with its 4-byte length, written at the start of `out`. */
function compressBlock(input: Buffer, out: Buffer): Buffer {
  const n = liblz4.compress(input, out, 4, 4 + liblz4.compressBound(input.length));
  if (n <= 0 || n >= input.length) {
    // Incompressible: store the block as is, flagged by the high bit of its length.
    out.writeUInt32LE((input.length | BLOCK_UNCOMPRESSED_FLAG) >>> 0, 0);
    input.copy(out, 4);
    return out.subarray(0, 4 + input.length);
  }
  out.writeUInt32LE(n, 0);
  return out.subarray(0, 4 + n);
}

/** Reads exact byte counts out of a chunked stream without copying more than needed. */
export class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;
  private readonly iterator: AsyncIterator<Uint8Array>;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  /** Fills the buffer to at least n bytes, or to end of stream. Returns how many bytes are available. */
  private async fill(n: number): Promise<number> {
    while (this.buffered < n && !this.done) {
      const next = await this.iterator.next();
      if (next.done) {
        this.done = true;
        break;
      }
      const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      if (chunk.length > 0) {
        this.chunks.push(chunk);
        this.buffered += chunk.length;
      }
    }
    return this.buffered;
  }

  /**
   * Exactly n bytes, or fewer only at end of stream (the caller decides whether that is an error).
   * Bytes that span chunks are copied into `scratch` when it is big enough (the caller must be done
   * with them before the next read), else into a new buffer.
   */
  async read(n: number, scratch?: Buffer): Promise<Buffer> {
    const available = await this.fill(n);
    const take = Math.min(n, available);
    if (take === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (first.length >= take) {
      const out = first.subarray(0, take);
      if (first.length === take) this.chunks.shift();
      else this.chunks[0] = first.subarray(take);
      this.buffered -= take;
      return out;
    }
    const out = scratch && scratch.length >= take ? scratch.subarray(0, take) : Buffer.allocUnsafe(take);
    this.consumeInto(out, 0);
    return out;
  }

  /** Moves the next `out.length - at` buffered bytes into `out` from offset `at`. */
  private consumeInto(out: Buffer, at: number): void {
    let pos = at;
    while (pos < out.length) {
      const c = this.chunks[0]!;
      const n = Math.min(c.length, out.length - pos);
      c.copy(out, pos, 0, n);
      pos += n;
      if (n === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(n);
    }
    this.buffered -= out.length - at;
  }

  /**
   * n bytes copied after `prefix` into one new buffer (fewer at end of stream): the block codec wants a
   * size prefix, and this builds it with a single copy of the data.
   */
  async readPrefixed(n: number, prefix: Buffer): Promise<Buffer> {
    const available = await this.fill(n);
    const take = Math.min(n, available);
    const out = Buffer.allocUnsafe(prefix.length + take);
    prefix.copy(out, 0);
    this.consumeInto(out, prefix.length);
    return out;
  }

  async atEnd(): Promise<boolean> {
    return (await this.fill(1)) === 0;
  }

  /** Stops reading the source (e.g. closes the file) when the consumer quits early. */
  async close(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.iterator.return?.();
    }
  }
}

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

export function corrupt(label: string | undefined, detail: string, cause?: unknown): ReplicateError {
  const what = label ? `decoding lz4 frame of ${label}` : 'decoding lz4 frame';
  return new ReplicateError('CORRUPT_OBJECT', `${what}: ${detail}`, { cause, details: label ? { object: label } : {} });
}

export async function readExact(reader: ByteReader, n: number, label: string | undefined, what: string, scratch?: Buffer): Promise<Buffer> {
  const buf = await reader.read(n, scratch);
  if (buf.length < n) throw corrupt(label, `object is truncated (unexpected end of data in ${what})`);
  return buf;
}

/** What a frame's descriptor says about the blocks that follow it. */
export interface FrameHeader {
  /** Blocks decode on their own (Litestream's frames); else each refers to the previous 64 KiB of output. */
  independent: boolean;
  blockChecksum: boolean;
  hasContentChecksum: boolean;
  contentSize: bigint | undefined;
  /** The largest decoded size of a block. */
  blockMax: number;
}

/** Reads up to the first block: skippable frames, magic, descriptor (checked against its checksum). */
export async function readFrameHeader(reader: ByteReader, label: string | undefined): Promise<FrameHeader> {
  if (await reader.atEnd()) throw corrupt(label, 'object is empty (no lz4 frame)');
  let magic: number;
  for (;;) {
    magic = (await readExact(reader, 4, label, 'frame magic')).readUInt32LE(0);
    if (((magic & SKIPPABLE_MAGIC_MASK) >>> 0) !== SKIPPABLE_MAGIC) break;
    const skipLength = (await readExact(reader, 4, label, 'skippable frame')).readUInt32LE(0);
    await readExact(reader, skipLength, label, 'skippable frame');
  }
  if (magic !== FRAME_MAGIC) throw corrupt(label, `bad magic number 0x${magic.toString(16).padStart(8, '0')}`);

  const descriptor = await readExact(reader, 2, label, 'frame descriptor');
  const flg = descriptor[0]!;
  const bd = descriptor[1]!;
  if (flg >> 6 !== 1) throw corrupt(label, `unsupported frame version ${flg >> 6}`);
  const hasContentSize = (flg & 0x08) !== 0;
  const hasDictId = (flg & 0x01) !== 0;
  const blockMax = BLOCK_MAX_SIZES[(bd >> 4) & 0x7];
  if (blockMax === undefined) throw corrupt(label, `invalid block size id ${(bd >> 4) & 0x7}`);
  const extra = await readExact(reader, (hasContentSize ? 8 : 0) + (hasDictId ? 4 : 0), label, 'frame descriptor');
  const hc = (await readExact(reader, 1, label, 'frame descriptor'))[0]!;
  const expectedHc = ((await xxh32(Buffer.concat([descriptor, extra]))) >>> 8) & 0xff;
  if (hc !== expectedHc) throw corrupt(label, 'frame header checksum mismatch');
  return {
    independent: (flg & 0x20) !== 0,
    blockChecksum: (flg & 0x10) !== 0,
    hasContentChecksum: (flg & 0x04) !== 0,
    contentSize: hasContentSize ? extra.readBigUInt64LE(0) : undefined,
    blockMax,
  };
}

/** A data block's header: 0 is the end mark; else its stored length and whether it is stored as is. */
export function parseBlockHeader(header: number, frame: FrameHeader, label: string | undefined): { length: number; stored: boolean } {
  const length = header & 0x7fffffff;
  if (length > frame.blockMax) throw corrupt(label, `block of ${length} bytes exceeds the frame's ${frame.blockMax}-byte maximum`);
  return { length, stored: (header & BLOCK_UNCOMPRESSED_FLAG) !== 0 };
}

/** Reads a block's checksum (when the frame has them) and checks it against the block's stored bytes. */
export async function checkBlockChecksum(reader: ByteReader, frame: FrameHeader, data: Uint8Array, label: string | undefined): Promise<void> {
  if (!frame.blockChecksum) return;
  const stored = (await readExact(reader, 4, label, 'block checksum')).readUInt32LE(0);
  const h = await newHasher();
  hashInSlices(h, data);
  const actual = h.digest() >>> 0;
  if (stored !== actual) throw corrupt(label, `block checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${actual.toString(16)})`);
}

/**
 * After the end mark: the content checksum (when the frame has one) against `digest` of the decoded
 * bytes, the content size (when the header gave one), and nothing after the frame.
 */
export async function finishFrame(reader: ByteReader, frame: FrameHeader, digest: number, total: bigint, label: string | undefined): Promise<void> {
  if (frame.hasContentChecksum) {
    const expected = (await readExact(reader, 4, label, 'content checksum')).readUInt32LE(0);
    const actual = digest >>> 0;
    if (expected !== actual) {
      throw corrupt(label, `content checksum mismatch (stored 0x${expected.toString(16)}, computed 0x${actual.toString(16)})`);
    }
  }
  if (frame.contentSize !== undefined && frame.contentSize !== total) {
    throw corrupt(label, `content size mismatch (header says ${frame.contentSize}, decoded ${total})`);
  }
  if (!(await reader.atEnd())) throw corrupt(label, 'unexpected data after the lz4 frame');
}

async function* decodeFrame(reader: ByteReader, label: string | undefined, reuseOutput: number, outputBuffer?: Buffer, inputScratch: { buffer?: Buffer } = {}): AsyncGenerator<Buffer> {
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

/** The message for liblz4's negative result (shared with the worker thread's decoder). */
export function blockDecodeFailure(result: number): string {
  return `block does not decode (liblz4 error at input byte ${-result})`;
}

function tail64k(history: Buffer | undefined, out: Buffer): Buffer {
  const WINDOW = 64 * 1024;
  if (out.length >= WINDOW) return Buffer.from(out.subarray(out.length - WINDOW));
  const joined = history ? Buffer.concat([history, out]) : out;
  return Buffer.from(joined.subarray(Math.max(0, joined.length - WINDOW)));
}
