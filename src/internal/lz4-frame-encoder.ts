/**
 * Encodes a byte stream as one LZ4 frame in Litestream's profile (lz4-frame-format.ts), a block (at most
 * 4 MiB) at a time, so memory is a few blocks whatever the input size. Separate from the decoder: the
 * write path (snapshots, WAL segments) needs only this, with its buffers kept across frames.
 */
import { liblz4 } from './liblz4.js';
import { BLOCK_UNCOMPRESSED_FLAG, LZ4_BLOCK_SIZE, LZ4_FRAME_HEADER } from './lz4-frame-format.js';
import { SpareBuffers } from './spare-buffers.js';
import { hashInSlices, newHasher } from './xxh32.js';

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
