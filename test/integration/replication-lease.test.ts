/**
 * The lease in the library (issue 14): startReplication waits for a lease held by another instance
 * before its first write, takes it when released, writes under it, and — when the lease is lost (broken
 * by hand here) — stops writing at once, emits 'leaseLost' and 'error', and close() fails without
 * writing. Real SQLite, a real file replica, an application in another process.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { breakLease, ReplicaLease } from '../../src/lease/replica-lease.js';
import { startReplication, type Replication } from '../../src/replication.js';
import { writeFromProcess } from '../helpers/app-process.js';
import { recordingLogger } from '../helpers/recording-logger.js';
import { sqliteOnce } from '../helpers/sqlite-cli.js';
import { SOURCE_SCHEMA } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-lease-lib-');
const leases = closeAfterEach((l: ReplicaLease) => l.release());
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

function objects(replicaDir: string): string[] {
  const gens = join(replicaDir, 'generations');
  let out: string[] = [];
  for (const g of safeReaddir(gens))
    for (const sub of ['snapshots', 'wal']) out = out.concat(safeReaddir(join(gens, g, sub)).map((f) => `${g}/${sub}/${f}`));
  return out.sort();
}
function safeReaddir(d: string): string[] {
  try {
    return readdirSync(d);
  } catch {
    return [];
  }
}

describe('startReplication with a lease', () => {
  it('waits for the holder, writes only once it holds the lease, and stops at once when it is lost', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    await sqliteOnce(dbPath, `PRAGMA journal_mode=WAL; ${SOURCE_SCHEMA}`);
    await writeFromProcess('node', dbPath, 1, 20);
    const client = new FileReplicaClient({ path: replicaDir });
    const other = new ReplicaLease({ client, replica: 'file', ttlMs: 60_000, identity: { instance: 'other' } });
    leases.push(other);
    await other.acquire();

    const log = recordingLogger();
    const lease = new ReplicaLease({ client, replica: 'file', ttlMs: 1500, logger: log, pollMs: 50 });
    const starting = startReplication({ dbPath, replicas: [{ client, lease, syncIntervalMs: 10 }], logger: log });
    await waitUntil(() => log.lines.some((l) => l.msg.startsWith('replica lease held by another instance')));
    expect(objects(replicaDir)).toEqual([]);
    await other.release();
    const r = await starting;
    open.push(r);
    expect(r.inWorker).toBe(false);
    await r.sync();
    expect(objects(replicaDir).length).toBeGreaterThan(0);

    const events: string[] = [];
    r.on('error', ({ error }) => events.push(`error ${(error as { code?: string }).code}`));
    const lost = new Promise<void>((resolve) => r.once('leaseLost', () => resolve()));
    await breakLease(client, lease.identity.instance);
    await lost;
    expect(events).toContain('error LEASE_LOST');
    const held = objects(replicaDir);
    await writeFromProcess('node', dbPath, 100, 20);
    await expect(r.sync()).rejects.toThrow(/lease/);
    await expect(r.close()).rejects.toThrow(/lease/);
    expect(objects(replicaDir)).toEqual(held);
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
