/**
 * A replica's WAL segments on the wire: where the remote ends (Litestream's position recovery, spec
 * §6.3), and a segment's bytes streamed from the local shadow WAL into the store.
 */
import { open } from 'node:fs/promises';
import { collect, type ReplicaClient, type WalSegmentInfo } from '../client/replica-client.js';
import { ReplicateError } from '../errors.js';
import type { Pos } from '../pos.js';
import { WAL_HEADER_SIZE, frameSize, parseWalHeader } from '../sqlite/wal-format.js';
import type { ObjectCodec } from './object-codec.js';

const READ_CHUNK = 1024 * 1024;

export interface RemoteEndOptions {
  /** Stored bytes read (for the GET byte counter). */
  onRead?: (bytes: number) => void;
  /**
   * Where a segment ends when the caller knows it without reading it (it uploaded it itself); consulted
   * only for the last segment, and only by a replica that cannot decrypt what it encrypts.
   */
  knownEnd?: (segment: WalSegmentInfo) => number | undefined;
}

/**
 * Where the replica's copy of a generation ends: after its last segment (decoded to learn its length),
 * or at the start of its newest snapshot's index. NO_BACKUPS when the generation has no snapshot;
 * AGE_IDENTITY when the last segment is encrypted and cannot be decrypted (and its end is not known).
 */
export async function remoteEnd(client: ReplicaClient, codec: ObjectCodec, replica: string, generation: string, opts: RemoteEndOptions = {}): Promise<Pos> {
  const { onRead } = opts;
  const snapshots = await collect(client.snapshots(generation));
  if (snapshots.length === 0) throw new ReplicateError('NO_BACKUPS', `replica ${replica}: no snapshot available in generation ${generation}`);
  const snapshotIndex = Math.max(...snapshots.map((s) => s.index));
  const segments = await collect(client.walSegments(generation));
  let last: WalSegmentInfo | undefined;
  for (const s of segments) if (!last || s.index > last.index || (s.index === last.index && s.offset > last.offset)) last = s;
  if (!last || last.index < snapshotIndex) return { generation, index: snapshotIndex, offset: 0 };
  const known = opts.knownEnd?.(last);
  if (known !== undefined) return { generation, index: last.index, offset: known };
  let length = 0;
  const reader = await client.walSegmentReader(last);
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of reader as AsyncIterable<Buffer>) {
      onRead?.(chunk.length);
      yield chunk;
    }
  }
  for await (const chunk of codec.decode(counted(), { label: client.walSegmentLocation(last) })) length += chunk.length;
  return { generation, index: last.index, offset: last.offset + length };
}

/**
 * Uploads shadow WAL file `path`'s bytes [pos.offset, end) as the segment named `pos`. Every frame must
 * carry the file's salts: a segment never mixes two WAL cycles.
 */
export async function uploadShadowSegment(client: ReplicaClient, codec: ObjectCodec, replica: string, path: string, pos: Pos, end: number, pageSize: number): Promise<WalSegmentInfo> {
  const handle = await open(path, 'r');
  try {
    const header = Buffer.allocUnsafe(WAL_HEADER_SIZE);
    await handle.read(header, 0, WAL_HEADER_SIZE, 0);
    const h = parseWalHeader(header, `shadow wal ${path}`);
    const fsize = frameSize(pageSize);
    // One read buffer for the whole segment: the encoder is done with a chunk before it pulls the next.
    const framesPerRead = Math.max(1, Math.floor(READ_CHUNK / fsize));
    const readBuffer = Buffer.allocUnsafe(Math.min(end - pos.offset, WAL_HEADER_SIZE + framesPerRead * fsize));
    async function* bytes(): AsyncGenerator<Buffer> {
      let at = pos.offset;
      while (at < end) {
        // Chunks end on frame boundaries (the first one of a file also holds the 32-byte header).
        const head = at === 0 ? WAL_HEADER_SIZE : 0;
        const want = Math.min(end - at, head + framesPerRead * fsize);
        const buf = readBuffer.subarray(0, want);
        const { bytesRead } = await handle.read(buf, 0, want, at);
        if (bytesRead !== want) throw new ReplicateError('IO', `replica ${replica}: short read of ${path} at ${at}`);
        for (let f = head; f + fsize <= want; f += fsize) {
          if (buf.readUInt32BE(f + 8) !== h.salt1 || buf.readUInt32BE(f + 12) !== h.salt2) {
            throw new ReplicateError('INVALID_WAL', `replica ${replica}: salt mismatch in ${path} at offset ${at + f}`);
          }
        }
        yield buf;
        at += want;
      }
    }
    return await client.writeWalSegment(pos, codec.encode(bytes()));
  } finally {
    await handle.close();
  }
}
