/**
 * uploadShadowSegment reads the shadow WAL in pieces that need not end on a frame boundary (one LZ4
 * block each): the segment holds exactly the shadow's bytes whatever the piece size, and a frame of
 * another cycle is refused also when its header is cut by the end of a piece.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../../src/client/file-client.js';
import type { ObjectBody, ReplicaClient, WalSegmentInfo } from '../../../src/client/replica-client.js';
import { decodeLz4Frame } from '../../../src/internal/lz4-frame.js';
import type { Pos } from '../../../src/pos.js';
import { ObjectCodec } from '../../../src/replica/object-codec.js';
import { uploadShadowSegment } from '../../../src/replica/segment-io.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const FSIZE = 4096 + 24;

/** A WAL of 60 committed single-page-ish transactions, copied as a shadow file. */
function shadowFile(transactions = 60) {
  const dir = mkdtempSync(join(tmpdir(), 'stn-segment-unit-'));
  dirs.push(dir);
  const db = new Database(join(dir, 'db.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  for (let i = 0; i < transactions; i++) insert.run(`${i}`.repeat(3000 / `${i}`.length));
  const bytes = readFileSync(join(dir, 'db.sqlite-wal'));
  db.close();
  const path = join(dir, 'shadow.wal');
  writeFileSync(path, bytes);
  return { dir, path, bytes, client: new FileReplicaClient({ path: join(dir, 'replica') }) };
}

async function segmentBytes(client: FileReplicaClient, pos: { generation: string; index: number; offset: number }): Promise<Buffer> {
  const out: Buffer[] = [];
  const codec = ObjectCodec.plain('file');
  for await (const chunk of codec.decode(await client.walSegmentReader(pos), { label: 'segment' })) out.push(Buffer.from(chunk));
  return Buffer.concat(out);
}

describe('uploadShadowSegment', () => {
  it('stores exactly the shadow bytes, from the header or from a frame, whatever the piece size', async () => {
    const s = shadowFile();
    const codec = ObjectCodec.plain('file');
    const frames = (s.bytes.length - 32) / FSIZE;
    const generation = '0123456789abcdef';
    for (const [i, piece] of [4 * 1024 * 1024, 10_000, FSIZE, 4099, 1000].entries()) {
      const from = { generation, index: i, offset: 0 };
      await uploadShadowSegment(s.client, codec, 'file', s.path, from, s.bytes.length, 4096, piece);
      expect((await segmentBytes(s.client, from)).equals(s.bytes), `piece ${piece}, from 0`).toBe(true);
      const mid = { generation, index: i, offset: 32 + 7 * FSIZE };
      const end = 32 + (frames - 3) * FSIZE;
      await uploadShadowSegment(s.client, codec, 'file', s.path, mid, end, 4096, piece);
      expect((await segmentBytes(s.client, mid)).equals(s.bytes.subarray(mid.offset, end)), `piece ${piece}, from a frame`).toBe(true);
    }
  });

  it('refuses a frame of another cycle, also when the end of a piece cuts its header', async () => {
    const s = shadowFile();
    const codec = ObjectCodec.plain('file');
    const frame = 32 + 5 * FSIZE;
    const damaged = Buffer.from(s.bytes);
    damaged[frame + 12] = damaged[frame + 12]! ^ 1; // salt-2 of frame 5
    writeFileSync(s.path, damaged);
    // Pieces ending inside that header (at frame + 10), right after it, and far from it.
    for (const piece of [frame + 10, frame + 24, 4 * 1024 * 1024]) {
      await expect(
        uploadShadowSegment(
          s.client,
          codec,
          'file',
          s.path,
          { generation: '0123456789abcdef', index: 0, offset: 0 },
          damaged.length,
          4096,
          piece,
        ),
      ).rejects.toMatchObject({
        code: 'INVALID_WAL',
      });
    }
  });

  it('a client that keeps the chunks it is given (not consumesBodyInOrder) gets chunks nothing reuses', async () => {
    const s = shadowFile(1500); // ~6 MiB: two LZ4 blocks per segment
    const codec = ObjectCodec.plain('file');
    const kept = new Map<string, Buffer[]>();
    // Holds every chunk, uncopied, until all uploads are done (as an SDK queueing parts might).
    const keeping = {
      async writeWalSegment(pos: Pos, body: ObjectBody): Promise<WalSegmentInfo> {
        const chunks: Buffer[] = [];
        for await (const c of body) chunks.push(c as Buffer);
        kept.set(`${pos.index}/${pos.offset}`, chunks);
        return { ...pos, size: chunks.reduce((n, c) => n + c.length, 0), createdAt: new Date() };
      },
    } as unknown as ReplicaClient;
    const generation = '0123456789abcdef';
    const mid = 32 + 100 * FSIZE;
    const uploads: [Pos, number][] = [
      [{ generation, index: 0, offset: 0 }, s.bytes.length],
      [{ generation, index: 1, offset: mid }, s.bytes.length],
      [{ generation, index: 2, offset: 0 }, mid],
    ];
    for (const [pos, end] of uploads) await uploadShadowSegment(keeping, codec, 'file', s.path, pos, end, 4096);
    // Meanwhile a file client (which may reuse its buffers) uploads too.
    await uploadShadowSegment(s.client, codec, 'file', s.path, { generation, index: 3, offset: 0 }, s.bytes.length, 4096);
    for (const [pos, end] of uploads) {
      const out: Buffer[] = [];
      for await (const c of decodeLz4Frame()(
        (async function* () {
          yield* kept.get(`${pos.index}/${pos.offset}`)!;
        })(),
      ))
        out.push(Buffer.from(c));
      expect(Buffer.concat(out).equals(s.bytes.subarray(pos.offset, end)), `segment ${pos.index}`).toBe(true);
    }
    expect((await segmentBytes(s.client, { generation, index: 3, offset: 0 })).equals(s.bytes)).toBe(true);
  });
});
