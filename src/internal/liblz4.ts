/**
 * The liblz4 block codec, through the native binding of the `lz4` package: LZ4_compress_default and
 * LZ4_decompress_safe, writing into buffers we allocate (and V8 accounts for). Separate from the frame
 * code so that the encoder and the decoder share one binding, loaded once.
 *
 * Why liblz4 and not lz4-napi for Litestream's frames: lz4-napi returns buffers V8 does not account for
 * (measured: RSS grew to 856 MB after decoding 200 blocks of 4 MiB because the garbage collector never
 * ran), and liblz4 is also faster here (decode ~3 GB/s, encode ~1.2 GB/s vs ~2.1 / ~0.7 GB/s). lz4-napi
 * serves only frames with linked blocks (which need the previous 64 KiB as a dictionary; see
 * lz4-frame-decoder.ts); Litestream never writes those.
 */
import { createRequire } from 'node:module';

export interface Liblz4 {
  /** LZ4_compress_default into output[start..end); returns the compressed size, 0 if it does not fit. */
  compress(input: Buffer, output: Buffer, start?: number, end?: number): number;
  /** LZ4_decompress_safe; returns the decoded size, negative for malformed input. */
  uncompress(input: Buffer, output: Buffer): number;
  compressBound(size: number): number;
}
// The package's native binding alone: its JS entry point also loads stream classes and a JS xxhash we do
// not use (~70 ms of start-up).
export const liblz4 = createRequire(import.meta.url)('lz4/build/Release/lz4.node') as Liblz4;
