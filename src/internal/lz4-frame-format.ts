/**
 * The LZ4 frame format: its constants, and reading and checking everything in a frame but the block
 * data (skippable frames, magic, descriptor and its checksum, block headers, block checksums, the end
 * mark, content checksum and size, nothing after the frame). Shared by the streaming decoder
 * (lz4-frame-decoder.ts) and the decoder into a file (lz4-frame-to-file.ts), so both check the same
 * things in the same order with the same errors.
 *
 * Writer profile (what Litestream writes, and what it can read back — see docs/compatibility.md):
 *   magic 04 22 4D 18 | FLG 0x64 (v01, independent blocks, content checksum, NO block checksum)
 *   | BD 0x70 (4 MiB blocks) | HC 0xB9 | blocks… | end mark 0 | xxh32 of the whole payload.
 * Never set the block-checksum flag: Litestream's LZ4 library rejects it.
 */
import { ReplicateError } from '../errors.js';
import type { ByteReader } from './byte-reader.js';
import { hashInSlices, newHasher, xxh32 } from './xxh32.js';

const FRAME_MAGIC = 0x184d2204;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
export const LZ4_BLOCK_SIZE = 4 * 1024 * 1024;
/** Litestream's exact frame header. */
export const LZ4_FRAME_HEADER = Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x64, 0x70, 0xb9]);
/** The high bit of a block's length: the block is stored as is (it did not compress). */
export const BLOCK_UNCOMPRESSED_FLAG = 0x80000000;
const BLOCK_MAX_SIZES: Record<number, number> = { 4: 64 * 1024, 5: 256 * 1024, 6: 1024 * 1024, 7: 4 * 1024 * 1024 };

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
    if ((magic & SKIPPABLE_MAGIC_MASK) >>> 0 !== SKIPPABLE_MAGIC) break;
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
export async function checkBlockChecksum(
  reader: ByteReader,
  frame: FrameHeader,
  data: Uint8Array,
  label: string | undefined,
): Promise<void> {
  if (!frame.blockChecksum) return;
  const stored = (await readExact(reader, 4, label, 'block checksum')).readUInt32LE(0);
  const h = await newHasher();
  hashInSlices(h, data);
  const actual = h.digest() >>> 0;
  if (stored !== actual)
    throw corrupt(label, `block checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${actual.toString(16)})`);
}

/**
 * After the end mark: the content checksum (when the frame has one) against `digest` of the decoded
 * bytes, the content size (when the header gave one), and nothing after the frame.
 */
export async function finishFrame(
  reader: ByteReader,
  frame: FrameHeader,
  digest: number,
  total: bigint,
  label: string | undefined,
): Promise<void> {
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

/** The message for liblz4's negative result (shared with the worker thread's decoder). */
export function blockDecodeFailure(result: number): string {
  return `block does not decode (liblz4 error at input byte ${-result})`;
}
