/**
 * An object once written is never rewritten with a later time. When the WAL index does not advance
 * (no checkpoint can restart it), every scheduled snapshot falls on the index of the existing one:
 * rewriting it would move its time later, and until then the generation has no snapshot at or before a
 * time T in between — a point-in-time restore at T would fall back to an older generation (ours) or
 * fail with "no snapshots available" (Litestream). The scheduled snapshot is skipped instead.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { collect } from '../../src/client/replica-client.js';
import { startReplication, type Replication } from '../../src/replication.js';
import { runCli } from '../helpers/cli.js';
import { runLitestream } from '../helpers/oracle.js';
import { recordingLogger } from '../helpers/recording-logger.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-snapidx-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

/** Apart from the file system's coarse clock: object times before it, the next write's after it. */
const SETTLE_MS = 25;

function appWrite(dbPath: string, seq: number, rows: number): void {
  const db = openSourceDb(dbPath);
  try {
    const insert = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < rows; i++) insert.run(textOf(seq * 1000 + i, 700), seq);
    })();
  } finally {
    db.close();
  }
}

async function bytesOf(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

describe('scheduled snapshots at an index that already has one', () => {
  it('leave the existing snapshot (time and bytes) alone, and a point-in-time restore between them is exact with both tools', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    appWrite(dbPath, 0, 5);
    const log = recordingLogger();
    const client = new FileReplicaClient({ path: replicaDir });
    const r = await startReplication({
      dbPath,
      replicas: [{ name: 'backup', client, syncIntervalMs: 10, retentionMs: 0, snapshotIntervalMs: 1000 }],
      // No checkpoint ever: the WAL index stays at 0.
      minCheckpointPageCount: 1_000_000,
      maxCheckpointPageCount: 0,
      checkpointIntervalMs: 0,
      logger: log,
    });
    open.push(r);
    await r.sync();
    const generation = r.shipper.pos()!.generation;
    const [first, ...more] = await collect(client.snapshots(generation));
    expect(more).toEqual([]);
    const firstBytes = await bytesOf(await client.snapshotReader(generation, first!.index));

    appWrite(dbPath, 1, 5);
    await r.sync();
    await sleep(SETTLE_MS);
    const t = new Date(); // after the first snapshot and write 1, before write 2 and any scheduled snapshot
    const expected = contentDigest(dbPath);
    await sleep(SETTLE_MS);
    appWrite(dbPath, 2, 5);
    await r.sync();

    // Two scheduled snapshots come due (written on main, skipped here).
    const scheduled = () => log.lines.filter((l) => l.fields?.replica === 'backup' && /^snapshot (written|skipped)/.test(l.msg)).length;
    while (scheduled() < 3) await sleep(50);
    await r.close();

    expect(r.shipper.pos()!.index).toBe(0); // the premise: the index never advanced
    const after = await collect(client.snapshots(generation));
    expect(after.map((s) => [s.index, s.createdAt.toISOString()])).toEqual([[first!.index, first!.createdAt.toISOString()]]);
    expect((await bytesOf(await client.snapshotReader(generation, first!.index))).equals(firstBytes)).toBe(true);
    expect(log.lines.filter((l) => l.msg.startsWith('snapshot skipped')).every((l) => l.level === 'info')).toBe(true);

    const ours = join(dir, 'ours.db');
    const theirs = join(dir, 'theirs.db');
    const a = await runCli(['restore', '-timestamp', t.toISOString(), '-o', ours, `file://${replicaDir}`]);
    expect(a.code, a.stderr).toBe(0);
    expect(contentDigest(ours)).toBe(expected);
    const b = await runLitestream(['restore', '-timestamp', t.toISOString(), '-o', theirs, `file://${replicaDir}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(contentDigest(theirs)).toBe(expected);
  });
});
