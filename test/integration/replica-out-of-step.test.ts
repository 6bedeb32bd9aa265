/**
 * A replica whose remote position and the local shadow WAL are out of step must recover, never loop:
 * - behind: the remote ends in a WAL index whose shadow file was already removed locally (its newest
 *   segments lost, or a store restored from an older backup). The chain cannot continue from there: the
 *   replica takes a new snapshot at the current index (logged at warn, with why) and goes on from it.
 * - ahead: the remote holds bytes of the generation past the local shadow's end (another replicator
 *   writes to the same replica, or a local tail was lost). The lineage diverged: one clear error, a
 *   new generation, and the replica continues in it.
 * Either way, both tools then restore the source exactly.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { collect } from '../../src/client/replica-client.js';
import { ReplicateError } from '../../src/errors.js';
import { decodeLz4Frame, encodeLz4Frame } from '../../src/internal/lz4-frame.js';
import { startReplication, type Replication } from '../../src/replication.js';
import { runCli } from '../helpers/cli.js';
import { runLitestream } from '../helpers/oracle.js';
import { recordingLogger } from '../helpers/recording-logger.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-outofstep-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

function appWrite(dbPath: string, seq: number, rows = 6): void {
  const db = openSourceDb(dbPath);
  try {
    const insert = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < rows; i++) insert.run(textOf(seq * 1000 + i, 1500), seq);
    })();
  } finally {
    db.close();
  }
}

function setup() {
  const dir = tmp();
  const dbPath = join(dir, 'app.db');
  const replicaDir = join(dir, 'replica');
  const client = new FileReplicaClient({ path: replicaDir });
  const log = recordingLogger();
  // A new WAL index every few transactions, so local cleanup removes old shadow files.
  const start = async () => {
    const r = await startReplication({
      dbPath,
      replicas: [{ name: 'backup', client, syncIntervalMs: 10, retentionMs: 0 }],
      minCheckpointPageCount: 4,
      logger: log,
    });
    open.push(r);
    return r;
  };
  return { dir, dbPath, replicaDir, client, log, start };
}

async function expectBothRestore(dir: string, replicaDir: string, expected: string): Promise<void> {
  for (const [tool, run] of [
    ['ours', runCli],
    ['litestream', runLitestream],
  ] as const) {
    const out = join(dir, `${tool}.db`);
    const res = await run(['restore', '-o', out, `file://${replicaDir}`]);
    expect(res.code, `${tool}: ${res.stderr}`).toBe(0);
    expect(contentDigest(out), tool).toBe(expected);
  }
}

describe('a replica out of step with the local shadow WAL', () => {
  it('behind local cleanup: takes a new snapshot at the current index (warn, once) and continues; both tools restore', async () => {
    const { dir, dbPath, replicaDir, client, log, start } = setup();
    appWrite(dbPath, 0);
    let r = await start();
    let seq = 1;
    while (r.shipper.pos()!.index < 6) {
      appWrite(dbPath, seq++);
      await r.sync();
    }
    const generation = r.shipper.pos()!.generation;
    const kept = await r.shipper.meta.shadowIndexes(generation);
    expect(kept[0]).toBeGreaterThan(2); // the premise: shadow files of indexes 0..2 are gone locally
    await r.close();
    open.splice(0);

    // The store loses the newest segments: the replica's remote position falls back into index 1.
    const lost = (await collect(client.walSegments(generation))).filter((s) => s.index >= 2);
    await client.deleteWalSegments(lost);

    r = await start();
    expect(r.shipper.pos()!.generation).toBe(generation); // continuity held across the restart
    await r.sync();
    await r.sync();
    appWrite(dbPath, seq++);
    await r.sync();
    await r.close();

    const warned = log.lines.filter((l) => l.level === 'warn' && /cannot continue/.test(l.msg));
    expect(warned).toHaveLength(1);
    expect(log.lines.filter((l) => /shadow wal limit/.test(l.msg))).toEqual([]);
    expect(await client.generations()).toEqual([generation]);
    const snapshots = await collect(client.snapshots(generation));
    expect(snapshots.map((s) => s.index).at(-1)).toBeGreaterThanOrEqual(kept.at(-1)!);
    await expectBothRestore(dir, replicaDir, contentDigest(dbPath));
  });

  it('past the local end (the remote holds bytes we do not): one clear error, a new generation, and both tools restore', async () => {
    const { dir, dbPath, replicaDir, client, log, start } = setup();
    appWrite(dbPath, 0);
    let r = await start();
    appWrite(dbPath, 1, 2);
    await r.sync();
    const generation = r.shipper.pos()!.generation;
    await r.close();
    open.splice(0);

    // Another replicator appends to the generation in the store: frames we never had.
    const segments = await collect(client.walSegments(generation));
    const last = segments.at(-1)!;
    const chunks: Buffer[] = [];
    for await (const c of decodeLz4Frame()(await client.walSegmentReader(last))) chunks.push(Buffer.from(c));
    const body = Buffer.concat(chunks);
    const frames = last.offset === 0 ? body.subarray(32) : body;
    expect(frames.length).toBeGreaterThan(0);
    await client.writeWalSegment(
      { generation, index: last.index, offset: last.offset + body.length },
      encodeLz4Frame(
        (async function* () {
          yield frames;
        })(),
      ),
    );

    r = await start();
    expect(r.shipper.pos()!.generation).toBe(generation);
    const errors: unknown[] = [];
    r.on('error', (e) => errors.push(e.error));
    // The first sync — the background loop's or this one — finds the divergence and fails with it.
    await r.sync().catch(() => undefined);
    await r.sync(); // recovered: the new generation, snapshot and all
    appWrite(dbPath, 2);
    await r.sync();
    await r.close();

    const newGeneration = r.shipper.pos()!.generation;
    expect(newGeneration).not.toBe(generation);
    expect(log.lines.filter((l) => l.level === 'error' && /diverged/.test(l.msg))).toHaveLength(1);
    const diverged = errors.filter((e) => e instanceof ReplicateError && e.code === 'REPLICA_DIVERGED');
    expect(diverged.map(String)).toEqual([expect.stringMatching(/past the local shadow wal's end.*a new generation was started/)]);
    expect((await client.generations()).sort()).toEqual([generation, newGeneration].sort());
    await expectBothRestore(dir, replicaDir, contentDigest(dbPath));
  });
});
