/**
 * Streaming LZ4 frames in Litestream v0.3.13's profile, with bounded memory: the codec's entry points,
 * for the code that stores and reads replica objects. The parts, each in its own module:
 * - lz4-frame-format.ts: the frame's constants, and reading and checking its headers and checksums;
 * - lz4-frame-encoder.ts / lz4-frame-decoder.ts: streaming encode and decode, a block at a time;
 * - lz4-frame-to-file.ts: decoding into a file with the blocks decoded on a worker thread;
 * - liblz4.ts (the block codec) and xxh32.ts (the frame checksums).
 *
 * liblz4.ts, lz4-frame-decoder.ts (lz4-napi, for linked blocks only) and lz4-frame-to-file.ts (its
 * worker thread) are the only importers of the LZ4 libraries.
 */
export { LZ4_BLOCK_SIZE, LZ4_FRAME_HEADER } from './lz4-frame-format.js';
export { encodeLz4Frame, type EncodeOptions } from './lz4-frame-encoder.js';
export { decodeLz4Frame, type DecodeOptions } from './lz4-frame-decoder.js';
