/**
 * Two generations whose last objects fall in the same second of the store's clock (Azure Blob's
 * CreationTime and Amazon S3's LastModified have 1-second resolution) tie in Litestream's generation
 * choice, which then takes the first generation in ascending name order — and so does ours. Our new
 * generation names sort descending in creation order, so both tools restore the newest lineage.
 *
 * Each attempt builds generation A (replicate, write, stop), breaks continuity while stopped (a write
 * by another connection, which as the last one to close checkpoints and deletes the WAL), and builds
 * generation B right after. The listing must show the tie (retried a few times if the second boundary
 * fell between them); then both restores must return B's content.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { AbsReplicaClient } from '../../src/client/abs-client.js';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { collect, type ReplicaClient } from '../../src/client/replica-client.js';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { startReplication } from '../../src/replication.js';
import { expectRestoresTo, writeOracleConfig } from '../helpers/cloud-oracle.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer } from '../servers/abs-server.js';
import { createBucket, startS3Server, type S3Server } from '../servers/s3-server.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-gentie-'));
let s3: S3Server | undefined;
beforeAll(async () => {
  // A fauxqs of our own that reports LastModified to the second, as Amazon S3 does.
  s3 = await startS3Server({ secondResolution: true });
});
afterAll(async () => {
  await s3?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const ATTEMPTS = 8;
/** Tied pairs each store must restore right (with random names, each has an even chance). */
const TIES_WANTED = 2;

/** A write by a short-lived connection of its own, as an application process would make it. */
function appWrite(dbPath: string, tag: number, rows: number): void {
  const db = openSourceDb(dbPath);
  try {
    const insert = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < rows; i++) insert.run(textOf(tag * 1000 + i, 800), tag);
    })();
  } finally {
    db.close();
  }
}

/** The newest object time of a generation, as both tools compute "updatedAt". */
async function updatedAt(client: ReplicaClient, generation: string): Promise<number> {
  const objects = [...(await collect(client.snapshots(generation))), ...(await collect(client.walSegments(generation)))];
  return Math.max(...objects.map((o) => o.createdAt.getTime()));
}

/** One generation's worth of replication: start, `fn`, sync, stop. Returns the generation it wrote. */
async function replicateOnce(dbPath: string, client: ReplicaClient, fn: () => Promise<void> | void): Promise<string> {
  // In-process: one test steps the wall clock with a spy on this thread's Date.now, which a worker would not see.
  const r = await startReplication({ dbPath, replicas: [{ client, syncIntervalMs: 10, retentionMs: 0 }], inline: true });
  try {
    await fn();
    await r.sync();
    return r.shipper.pos()!.generation;
  } finally {
    await r.close();
  }
}

interface Store {
  client(prefix: string): ReplicaClient;
  config(dbPath: string, prefix: string): string;
}

async function expectNewestGenerationRestored(store: Store): Promise<void> {
  let ties = 0;
  for (let attempt = 1; attempt <= ATTEMPTS && ties < TIES_WANTED; attempt++) {
    const prefix = `tie-${attempt}-${randomBytes(3).toString('hex')}`;
    const dbPath = join(dir, `${prefix}.db`);
    appWrite(dbPath, 0, 20);
    const client = store.client(prefix);
    const a = await replicateOnce(dbPath, client, async () => {
      appWrite(dbPath, 1, 10);
      // Start A's last upload at the beginning of a second, so that B's can land in the same one.
      await sleep(1000 - (Date.now() % 1000) + 5);
      appWrite(dbPath, 2, 10);
    });
    appWrite(dbPath, 3, 10); // while stopped: continuity is lost, the next start is a new generation
    const b = await replicateOnce(dbPath, client, () => undefined);
    const expected = contentDigest(dbPath);

    expect(b).not.toBe(a);
    expect((await client.generations()).sort()).toEqual([a, b].sort());
    const [ua, ub] = [await updatedAt(client, a), await updatedAt(client, b)];
    if (ua !== ub) continue; // the second boundary fell between them: again
    const config = store.config(dbPath, prefix);
    await expectRestoresTo('ours', config, dbPath, join(dir, `${prefix}-ours.db`), expected);
    await expectRestoresTo('litestream', config, dbPath, join(dir, `${prefix}-litestream.db`), expected);
    ties++;
  }
  expect(ties, `generation pairs tied to the second in ${ATTEMPTS} attempts`).toBe(TIES_WANTED);
}

describe('generations whose last objects fall in the same second', () => {
  it('azure blob (azurite): both tools restore the newest generation', async () => {
    const container = `tie-${randomBytes(4).toString('hex')}`;
    const endpoint = inject('absEndpoint');
    await createContainer(endpoint, container);
    await expectNewestGenerationRestored({
      client: (prefix) =>
        new AbsReplicaClient({ accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, bucket: container, path: prefix, endpoint }),
      config: (dbPath, prefix) =>
        writeOracleConfig(join(dir, `${prefix}.yml`), dbPath, [
          'type: abs',
          `account-name: ${AZURITE_ACCOUNT}`,
          `account-key: ${AZURITE_KEY}`,
          `endpoint: ${endpoint}`,
          `bucket: ${container}`,
          `path: ${prefix}`,
        ]),
    });
  }, 120_000);

  it('s3 (LastModified to the second): both tools restore the newest generation', async () => {
    const bucket = `tie-${randomBytes(4).toString('hex')}`;
    const endpoint = s3!.endpoint;
    await createBucket(endpoint, bucket);
    await expectNewestGenerationRestored({
      client: (prefix) =>
        new S3ReplicaClient({ bucket, path: prefix, endpoint, region: 'us-east-1', accessKeyId: 'k', secretAccessKey: 's' }),
      config: (dbPath, prefix) =>
        writeOracleConfig(join(dir, `${prefix}.yml`), dbPath, [
          'type: s3',
          `bucket: ${bucket}`,
          `path: ${prefix}`,
          `endpoint: ${endpoint}`,
          'region: us-east-1',
          'force-path-style: true',
          'access-key-id: k',
          'secret-access-key: s',
        ]),
    });
  }, 120_000);
});

describe('generation names after a backward clock step', () => {
  it('the next generation still sorts below the previous one', async () => {
    const dbPath = join(dir, 'clock-step.db');
    appWrite(dbPath, 0, 5);
    const client = new FileReplicaClient({ path: join(dir, 'clock-step-replica') });
    const a = await replicateOnce(dbPath, client, () => appWrite(dbPath, 1, 5));
    appWrite(dbPath, 2, 5); // while stopped: the next start is a new generation
    const realNow = Date.now.bind(Date);
    const stepped = vi.spyOn(Date, 'now').mockImplementation(() => realNow() - 86_400_000); // NTP stepped the clock back a day
    let b: string;
    try {
      b = await replicateOnce(dbPath, client, () => undefined);
    } finally {
      stepped.mockRestore();
    }
    expect(b).not.toBe(a);
    expect(b < a, `${b} < ${a}`).toBe(true);
  });
});
