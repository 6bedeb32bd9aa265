/**
 * Waits use a monotonic clock: a backward step of the wall clock (NTP correcting it at boot, a VM
 * resumed) must not stall uploads for the length of the step. The replica's background loop — not
 * sync(), which uploads directly — has to carry each write to the replica after the step.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { comparePos, formatPos } from '../../src/pos.js';
import { startReplication, type ReplicaView, type Replication } from '../../src/replication.js';
import { runCli } from '../helpers/cli.js';
import { runLitestream } from '../helpers/oracle.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-clockstep-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));
afterEach(async () => {
  vi.restoreAllMocks();
});

function appWrite(dbPath: string, seq: number): void {
  const db = openSourceDb(dbPath);
  try {
    const insert = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < 5; i++) insert.run(textOf(seq * 1000 + i, 900), seq);
    })();
  } finally {
    db.close();
  }
}

/**
 * Lets the shipper copy the write, then waits (on the monotonic clock, which the stub does not touch)
 * for the replica's own loop to upload it. The bound only turns an hour-long stall into a failure.
 */
async function backgroundCatchesUp(r: Replication, replica: ReplicaView): Promise<void> {
  await r.shipper.sync();
  const target = r.shipper.pos()!;
  const deadline = performance.now() + 20_000;
  while (!(replica.pos() && comparePos(replica.pos()!, target) >= 0)) {
    if (performance.now() > deadline)
      throw new Error(`the replica stalled at ${formatPos(replica.pos())}; the shipper is at ${formatPos(target)}`);
    await sleep(20);
  }
}

describe('a backward step of the wall clock', () => {
  it('does not stall uploads: the replica catches up after each write, and both tools restore it', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    appWrite(dbPath, 0);
    const r = await startReplication({
      dbPath,
      replicas: [{ name: 'backup', client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 50, retentionMs: 0 }],
      monitorIntervalMs: 100,
      inline: true, // the wall clock is stepped with a spy on this thread's Date.now, which a worker would not see
    });
    open.push(r);
    const replica = r.replicas[0]!;
    appWrite(dbPath, 1);
    await backgroundCatchesUp(r, replica);

    const realNow = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() - 3600_000); // NTP steps the clock back an hour
    for (let seq = 2; seq <= 4; seq++) {
      appWrite(dbPath, seq);
      await backgroundCatchesUp(r, replica);
    }
    vi.restoreAllMocks();
    await r.close();

    const expected = contentDigest(dbPath);
    for (const [tool, run] of [
      ['ours', runCli],
      ['litestream', runLitestream],
    ] as const) {
      const out = join(dir, `${tool}.db`);
      const res = await run(['restore', '-o', out, `file://${replicaDir}`]);
      expect(res.code, res.stderr).toBe(0);
      expect(contentDigest(out), tool).toBe(expected);
    }
  });
});
