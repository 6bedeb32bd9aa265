/**
 * xxh32 (seed 0), the checksum of LZ4 frames: of the frame descriptor, of each block (when the frame has
 * block checksums) and of the whole content. One module for the WebAssembly hasher that the encoder, the
 * decoder and the decode-to-file worker's main thread share, with the slicing that keeps its memory small.
 */
import xxhash from 'xxhash-wasm';

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
export async function xxh32(data: Uint8Array): Promise<number> {
  const h = await newHasher();
  h.update(data);
  return h.digest() >>> 0;
}
