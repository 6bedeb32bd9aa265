/**
 * Re-cuts a byte stream into pieces of exactly `size` bytes (the last one shorter), for stores that
 * take an upload as separately sent, separately retried parts. Holds at most one piece plus one input
 * chunk in memory; a piece that is yielded is a fresh Buffer the consumer may keep.
 */
export async function* fixedChunks(body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  for await (const raw of body) {
    let chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    while (chunk.length > 0) {
      const take = Math.min(size - have, chunk.length);
      parts.push(Buffer.from(chunk.subarray(0, take))); // a copy: the producer may reuse its buffer
      have += take;
      chunk = chunk.subarray(take);
      if (have === size) {
        yield Buffer.concat(parts, size);
        parts = [];
        have = 0;
      }
    }
  }
  if (have > 0) yield Buffer.concat(parts, have);
}
