/**
 * replication.status(), in-process and from the worker thread: the counters move as an application
 * process writes; a replica whose store is unreachable has a lag that grows (although nothing is
 * uploaded) and its error shown, and back at 0 once it caught up; the library's metrics server answers
 * /healthz 503 then 200, and closes with the replication.
 *
 * Unreachable store: the file replica's directory is moved away and a regular file put at its path
 * (every write there fails with ENOTDIR, even as root); moving it back makes it reachable again.
 * The worker runs the compiled code in dist/: `npm run build` first.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { startMetricsServer } from '../../src/metrics/metrics-server.js';
import { describeError } from '../../src/errors.js';
import { startReplication, type Replication } from '../../src/replication.js';
import type { ReplicationStatus } from '../../src/replication-status.js';
import { writeFromProcess } from '../helpers/app-process.js';
import { sqliteOnce } from '../helpers/sqlite-cli.js';
import { SOURCE_SCHEMA } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-status-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${describeError(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const inline of [true, false]) {
  describe(`replication.status() ${inline ? 'in-process' : 'from the worker thread'}`, () => {
    it('counts what happens, and lag rises while the store is unreachable and returns to 0', async () => {
      const dir = tmp();
      const dbPath = join(dir, 'app.db');
      const replicaDir = join(dir, 'replica');
      await sqliteOnce(dbPath, `PRAGMA journal_mode=WAL; ${SOURCE_SCHEMA}`);
      const r = await startReplication({
        dbPath,
        replicas: [{ name: 'backup', client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 50 }],
        monitorIntervalMs: 100,
        minCheckpointPageCount: 4,
        inline,
      });
      open.push(r);
      expect(r.inWorker).toBe(!inline);

      await writeFromProcess('node', dbPath, 1, 50, 500);
      await r.sync();
      const s1 = await r.status();
      expect(s1.dbPath).toBe(dbPath);
      expect(s1.position?.generation).toMatch(/^[0-9a-f]{16}$/);
      expect(s1.shipper.dbSizeBytes).toBeGreaterThan(0);
      expect(s1.shipper.totalWalBytes).toBeGreaterThan(50 * 500);
      expect(s1.shipper.syncCount).toBeGreaterThan(0);
      expect(s1.shipper.shadowWalIndex).toBe(s1.position!.index);
      const rep1 = s1.replicas[0]!;
      expect(rep1).toMatchObject({ name: 'backup', type: 'file', lagSeconds: 0, validations: { ok: 0, mismatch: 0, error: 0 } });
      expect(rep1.position).toEqual(s1.position);
      expect(rep1.walBytes).toBeGreaterThan(50 * 500);
      expect(rep1.operations.PUT.count).toBeGreaterThan(0);
      expect(rep1.operations.PUT.bytes).toBeGreaterThan(0);
      expect(rep1.lastUploadAt).toBeGreaterThan(Date.now() - 60_000);
      expect(rep1.error).toBeUndefined();
      // Plain data: what crosses a thread boundary or becomes JSON unchanged.
      expect(structuredClone(s1)).toEqual(s1);

      const server = await startMetricsServer({ addr: '127.0.0.1:0', replications: [r], healthMaxLagMs: 300 });
      const health = async () => {
        const res = await fetch(`${server.url}/healthz`);
        return {
          code: res.status,
          body: (await res.json()) as { status: string; replicas: { name: string; lagSeconds: number; behind: boolean; error?: string }[] },
        };
      };
      expect((await health()).code).toBe(200);

      // The store becomes unreachable; the app keeps writing.
      renameSync(replicaDir, `${replicaDir}.away`);
      writeFileSync(replicaDir, 'not a directory');
      let n = 1000;
      const lagging = await waitFor('the lag to pass 0.5 s', async () => {
        await writeFromProcess('node', dbPath, n, 5, 500);
        n += 5;
        const s = await r.status();
        return s.replicas[0]!.lagSeconds > 0.5 ? s : undefined;
      });
      const stuck = lagging.replicas[0]!;
      expect(stuck.error).toMatch(/ENOTDIR|not a directory/i);
      // Still measured from the last position known to be in the store.
      expect(stuck.position?.generation).toBe(rep1.position!.generation);
      const h503 = await health();
      expect(h503.code).toBe(503);
      expect(h503.body.status).toBe('behind');
      expect(h503.body.replicas[0]).toMatchObject({ name: 'backup', behind: true });
      expect(h503.body.replicas[0]!.lagSeconds).toBeGreaterThan(0.3);
      // Nothing new uploaded, and yet the lag keeps growing.
      const again = await waitFor('the lag to grow with no writes', async () => {
        const s = await r.status();
        return s.replicas[0]!.lagSeconds > stuck.lagSeconds + 0.2 ? s : undefined;
      });
      expect(again.replicas[0]!.walBytes).toBe(stuck.walBytes);

      // Reachable again: caught up, lag 0, healthy.
      rmSync(replicaDir);
      renameSync(`${replicaDir}.away`, replicaDir);
      const caughtUp: ReplicationStatus = await waitFor('the replica to catch up', async () => {
        const s = await r.status();
        return s.replicas[0]!.lagSeconds === 0 && s.replicas[0]!.error === undefined ? s : undefined;
      });
      expect(caughtUp.replicas[0]!.walBytes).toBeGreaterThan(stuck.walBytes);
      expect((await health()).code).toBe(200);

      // Closing the replication closes the server it was given.
      await r.close();
      open.splice(open.indexOf(r), 1);
      await waitFor('the server to close', async () => {
        try {
          await fetch(`${server.url}/healthz`);
          return undefined;
        } catch {
          return true;
        }
      });
    });
  });
}
