/**
 * A replica's WAL segments on the wire: where the remote ends (Litestream's position recovery, calcPos:
 * see remoteEnd), and a segment's bytes streamed from the local shadow WAL into the store.
 */
import { open } from 'node:fs/promises';
import { collect, type ReplicaClient, type WalSegmentInfo } from '../client/replica-client.js';
import { ReplicateError } from '../errors.js';
import type { Pos } from '../pos.js';
import { WAL_HEADER_SIZE, frameSize, parseWalHeader } from '../sqlite/wal-format.js';
import type { ObjectCodec } from './object-codec.js';
import { LZ4_BLOCK_SIZE } from '../internal/lz4-frame.js';
import { SpareBuffers } from '../internal/spare-buffers.js';

/**
 * The read buffer of the upload in progress, kept for the next one (uploads of a replica are one at a
 * time; replicas uploading at once each take their own): a fresh 4 MiB per segment, several a second
 * under load, was garbage the collector found late and glibc kept.
 */
const readBuffers = new SpareBuffers(1, LZ4_BLOCK_SIZE);

export interface RemoteEndOptions {
  /** Stored bytes read (for the GET byte counter). */
  onRead?: (bytes: number) => void;
  /**
   * Where a segment ends when the caller knows it without reading it (it uploaded it itself); consulted
   * only for the last segment, and only by a replica that cannot decrypt what it encrypts.
   */
  knownEnd?: (segment: WalSegmentInfo) => number | undefined;
}

/** The largest WAL frame: a 24-byte header and a 64 KiB page. */
const MAX_FRAME_BYTES = 24 + 65536;

export interface RemoteEnd {
  pos: Pos;
  /**
   * The last bytes of the last segment, decoded (one largest frame's worth, or all of a shorter
   * segment): what the local shadow WAL must hold just before `pos` for uploads to go on from there. A
   * frame's header carries the checksum of its whole cycle up to it, so equal bytes mean one history.
   * Undefined when the end was not read (a snapshot's index, or an end known without reading).
   */
  tail?: Buffer;
}

/**
 * Where the replica's copy of a generation ends: after its last segment (decoded to learn its length),
 * or at the start of its newest snapshot's index. NO_BACKUPS when the generation has no snapshot;
 * AGE_IDENTITY when the last segment is encrypted and cannot be decrypted (and its end is not known).
 */
export async function remoteEnd(
  client: ReplicaClient,
  codec: ObjectCodec,
  replica: string,
  generation: string,
  opts: RemoteEndOptions = {},
): Promise<RemoteEnd> {
  const { onRead } = opts;
  const snapshots = await collect(client.snapshots(generation));
  if (snapshots.length === 0)
    throw new ReplicateError('NO_BACKUPS', `replica ${replica}: no snapshot available in generation ${generation}`);
  const snapshotIndex = Math.max(...snapshots.map((s) => s.index));
  const segments = await collect(client.walSegments(generation));
  let last: WalSegmentInfo | undefined;
  for (const s of segments) if (!last || s.index > last.index || (s.index === last.index && s.offset > last.offset)) last = s;
  if (!last || last.index < snapshotIndex) return { pos: { generation, index: snapshotIndex, offset: 0 } };
  const known = opts.knownEnd?.(last);
  if (known !== undefined) return { pos: { generation, index: last.index, offset: known } };
  let length = 0;
  let tail = Buffer.alloc(0);
  const reader = await client.walSegmentReader(last);
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of reader as AsyncIterable<Buffer>) {
      onRead?.(chunk.length);
      yield chunk;
    }
  }
  for await (const chunk of codec.decode(counted(), { label: client.walSegmentLocation(last) })) {
    length += chunk.length;
    // Copied: a decoder may hand out views of a buffer it reuses.
    tail =
      chunk.length >= MAX_FRAME_BYTES
        ? Buffer.from(chunk.subarray(-MAX_FRAME_BYTES))
        : Buffer.concat([tail, chunk]).subarray(-MAX_FRAME_BYTES);
  }
  return { pos: { generation, index: last.index, offset: last.offset + length }, tail };
}

/**
 * Uploads shadow WAL file `path`'s bytes [pos.offset, end) as the segment named `pos`. Every frame must
 * carry the file's salts: a segment never mixes two WAL cycles.
 *
 * Read in pieces of exactly one LZ4 block (4 MiB) into one buffer: the encoder compresses a piece that
 * is a whole block where it is, and is done with it before it pulls the next. Frame-aligned pieces of
 * 1 MiB were copied into the encoder's block buffer, which grew 1, 2, 4 MiB for every segment (a tenth of
 * the replicator's CPU under a steady write load, and most of its garbage).
 */
export async function uploadShadowSegment(
  client: ReplicaClient,
  codec: ObjectCodec,
  replica: string,
  path: string,
  pos: Pos,
  end: number,
  pageSize: number,
  /** The read size; other than one block only in tests (frame headers cut by a piece's end). */
  pieceBytes = LZ4_BLOCK_SIZE,
): Promise<WalSegmentInfo> {
  const handle = await open(path, 'r');
  try {
    const header = Buffer.allocUnsafe(WAL_HEADER_SIZE);
    await handle.read(header, 0, WAL_HEADER_SIZE, 0);
    const h = parseWalHeader(header, `shadow wal ${path}`);
    const fsize = frameSize(pageSize);
    const salts = Buffer.allocUnsafe(8);
    const check = (s: Buffer, offset: number, frame: number) => {
      if (s.readUInt32BE(offset) !== h.salt1 || s.readUInt32BE(offset + 4) !== h.salt2) {
        throw new ReplicateError('INVALID_WAL', `replica ${replica}: salt mismatch in ${path} at offset ${frame}`);
      }
    };
    async function* bytes(): AsyncGenerator<Buffer> {
      const readBuffer = readBuffers.take(Math.min(end - pos.offset, pieceBytes), pieceBytes);
      let at = pos.offset;
      let frame = at === 0 ? WAL_HEADER_SIZE : at; // the next frame header to check
      while (at < end) {
        const want = Math.min(end - at, pieceBytes); // a spare can be larger than a piece
        const buf = readBuffer.subarray(0, want);
        const { bytesRead } = await handle.read(buf, 0, want, at);
        if (bytesRead !== want) throw new ReplicateError('IO', `replica ${replica}: short read of ${path} at ${at}`);
        for (; frame + 16 <= at + want; frame += fsize) check(buf, frame - at + 8, frame);
        if (frame < at + want) {
          // A frame header cut by the end of the piece: its salts read on their own (once per 4 MiB at most).
          const { bytesRead: n } = await handle.read(salts, 0, 8, frame + 8);
          if (n !== 8) throw new ReplicateError('IO', `replica ${replica}: short read of ${path} at ${frame + 8}`);
          check(salts, 0, frame);
          frame += fsize;
        }
        yield buf;
        at += want;
      }
      // Given back once the encoder has pulled past the last piece (it is done with each piece before
      // it pulls the next), never from a `finally`: a read still in flight could fill it later.
      readBuffers.give(readBuffer);
    }
    return await client.writeWalSegment(pos, codec.encode(bytes(), { reuseOutput: client.consumesBodyInOrder === true }));
  } finally {
    await handle.close();
  }
}
