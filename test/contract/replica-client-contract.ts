/**
 * The contract every ReplicaClient backend passes. A backend's test file calls
 * `describeReplicaClientContract('name', factory)` with a factory that gives a fresh, empty replica.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collect, supportsLease, type LeaseCapableClient, type ReplicaClient } from '../../src/client/replica-client.js';
import { encodeLeaseRecord, type LeaseRecord } from '../../src/lease/lease-record.js';
import { breakLease, ReplicaLease } from '../../src/lease/replica-lease.js';
import { isNotFound, NotFoundError } from '../../src/errors.js';
import { startReplication } from '../../src/replication.js';
import { pollsOf } from '../helpers/shipper-polls.js';
import { openSourceDb } from '../helpers/source-db.js';

export interface ContractFixture {
  client: ReplicaClient;
  cleanup(): Promise<void>;
  /** Allowed difference between object timestamps and the local clock (e.g. S3's 1 s resolution). */
  clockSlackMs?: number;
  /** Object stores: every key under the replica's path, read with the store's own SDK (not the client). */
  keys?(): Promise<string[]>;
}

const GEN_A = '0123456789abcdef';
const GEN_B = 'fedcba9876543210';

function body(...parts: (string | Buffer)[]): AsyncIterable<Uint8Array> {
  return Readable.from(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

export interface ContractOptions {
  /**
   * Whether the backend implements the lease primitives (ReplicaClient.readLease/writeLease). Each
   * backend's test file says so explicitly; the suite checks the claim, and runs the lease contract
   * only for those that do (every built-in backend: file, s3, gcs, abs).
   */
  lease: boolean;
}

export function describeReplicaClientContract(
  name: string,
  factory: () => Promise<ContractFixture>,
  options: ContractOptions = { lease: false },
): void {
  describe(`ReplicaClient contract: ${name}`, () => {
    let fx: ContractFixture;
    let c: ReplicaClient;
    beforeEach(async () => {
      fx = await factory();
      c = fx.client;
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    it('lists an empty replica as empty', async () => {
      expect(await c.generations()).toEqual([]);
      expect(await collect(c.snapshots(GEN_A))).toEqual([]);
      expect(await collect(c.walSegments(GEN_A))).toEqual([]);
    });

    it('writes, lists and reads back a snapshot', async () => {
      const before = Date.now();
      const info = await c.writeSnapshot(GEN_A, 5, body('hello ', 'snapshot'));
      const after = Date.now();
      expect(info).toMatchObject({ generation: GEN_A, index: 5, size: 14 });
      const listed = await collect(c.snapshots(GEN_A));
      expect(listed).toHaveLength(1);
      expect(listed[0]).toMatchObject({ generation: GEN_A, index: 5, size: 14 });
      const slack = fx.clockSlackMs ?? 50;
      expect(listed[0]!.createdAt.getTime()).toBeGreaterThanOrEqual(before - slack);
      expect(listed[0]!.createdAt.getTime()).toBeLessThanOrEqual(after + slack);
      expect((await readAll(await c.snapshotReader(GEN_A, 5))).toString()).toBe('hello snapshot');
      expect(await c.generations()).toEqual([GEN_A]);
    });

    it('lists WAL segments in (index, offset) order whatever the write order', async () => {
      const positions = [
        { index: 2, offset: 0 },
        { index: 0, offset: 4152 },
        { index: 10, offset: 0 },
        { index: 0, offset: 0 },
        { index: 2, offset: 0x1038 + 4120 },
        { index: 2, offset: 0x1038 },
      ];
      for (const p of positions) await c.writeWalSegment({ generation: GEN_A, ...p }, body(`seg ${p.index}/${p.offset}`));
      const listed = await collect(c.walSegments(GEN_A));
      expect(listed.map((s) => [s.index, s.offset])).toEqual([
        [0, 0],
        [0, 4152],
        [2, 0],
        [2, 0x1038],
        [2, 0x1038 + 4120],
        [10, 0],
      ]);
      for (const s of listed) {
        const text = (await readAll(await c.walSegmentReader(s))).toString();
        expect(text).toBe(`seg ${s.index}/${s.offset}`);
        expect(s.size).toBe(text.length);
      }
    });

    it('lists generations sorted and keeps them apart', async () => {
      await c.writeSnapshot(GEN_B, 0, body('b'));
      await c.writeSnapshot(GEN_A, 0, body('a'));
      await c.writeWalSegment({ generation: GEN_B, index: 0, offset: 0 }, body('bw'));
      expect(await c.generations()).toEqual([GEN_A, GEN_B]);
      expect(await collect(c.walSegments(GEN_A))).toEqual([]);
      expect((await collect(c.walSegments(GEN_B))).map((s) => s.offset)).toEqual([0]);
    });

    it('raises NotFound for a missing snapshot or segment', async () => {
      const e1 = await c
        .snapshotReader(GEN_A, 1)
        .then(readAll)
        .catch((e: unknown) => e);
      expect(isNotFound(e1)).toBe(true);
      const e2 = await c
        .walSegmentReader({ generation: GEN_A, index: 0, offset: 0 })
        .then(readAll)
        .catch((e: unknown) => e);
      expect(isNotFound(e2)).toBe(true);
    });

    it('overwrites a snapshot at the same index', async () => {
      await c.writeSnapshot(GEN_A, 3, body('first version'));
      await c.writeSnapshot(GEN_A, 3, body('second'));
      const listed = await collect(c.snapshots(GEN_A));
      expect(listed.map((s) => [s.index, s.size])).toEqual([[3, 6]]);
      expect((await readAll(await c.snapshotReader(GEN_A, 3))).toString()).toBe('second');
    });

    it('deletes idempotently', async () => {
      await c.writeSnapshot(GEN_A, 1, body('s1'));
      await c.writeSnapshot(GEN_A, 2, body('s2'));
      await c.writeWalSegment({ generation: GEN_A, index: 1, offset: 0 }, body('w'));
      await c.writeWalSegment({ generation: GEN_A, index: 2, offset: 0 }, body('w'));
      await c.deleteSnapshot(GEN_A, 1);
      await c.deleteSnapshot(GEN_A, 1);
      await c.deleteSnapshot(GEN_B, 9);
      expect((await collect(c.snapshots(GEN_A))).map((s) => s.index)).toEqual([2]);
      await c.deleteWalSegments([
        { generation: GEN_A, index: 1, offset: 0 },
        { generation: GEN_A, index: 7, offset: 0 },
      ]);
      await c.deleteWalSegments([]);
      expect((await collect(c.walSegments(GEN_A))).map((s) => s.index)).toEqual([2]);
      await c.deleteGeneration(GEN_A);
      await c.deleteGeneration(GEN_A);
      expect(await c.generations()).toEqual([]);
      expect(await collect(c.snapshots(GEN_A))).toEqual([]);
    });

    it('streams a large object (several LZ4-block sizes) byte for byte', async () => {
      const chunk = Buffer.alloc(1 << 20);
      for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 2654435761) >>> 24;
      async function* big() {
        for (let i = 0; i < 13; i++) {
          const c2 = Buffer.from(chunk);
          c2.writeUInt32LE(i, 0);
          yield c2;
        }
      }
      const info = await c.writeSnapshot(GEN_A, 0, big());
      expect(info.size).toBe(13 << 20);
      const back = await readAll(await c.snapshotReader(GEN_A, 0));
      expect(back.length).toBe(13 << 20);
      for (let i = 0; i < 13; i++) expect(back.readUInt32LE(i << 20)).toBe(i);
    });

    it('lists to the end across many pages (the cloud fixtures use tiny pages)', async () => {
      const gens = ['0000000000000001', '0000000000000002', '0000000000000003', '0000000000000004', '0000000000000005'];
      for (const g of gens) await c.writeSnapshot(g, 1, body('s'));
      const positions = Array.from({ length: 11 }, (_, i) => ({ generation: GEN_A, index: Math.floor(i / 4), offset: (i % 4) * 4152 }));
      await Promise.all(positions.map((p) => c.writeWalSegment(p, body('w'))));
      expect(await c.generations()).toEqual([...gens, GEN_A].sort());
      expect((await collect(c.walSegments(GEN_A))).map((w) => [w.index, w.offset])).toEqual(positions.map((p) => [p.index, p.offset]));
      await c.deleteGeneration(GEN_A);
      expect(await collect(c.walSegments(GEN_A))).toEqual([]);
    });

    it('counts its requests by kind', async () => {
      const at = (k: 'LIST' | 'PUT' | 'GET' | 'DELETE', before: Readonly<Record<string, number>>) => c.requestCounts()[k] - before[k]!;
      let before = c.requestCounts();
      await c.writeSnapshot(GEN_A, 1, body('snapshot'));
      expect(at('PUT', before)).toBeGreaterThanOrEqual(1);
      expect(at('GET', before) + at('DELETE', before)).toBe(0);
      before = c.requestCounts();
      await collect(c.snapshots(GEN_A));
      expect(at('LIST', before)).toBeGreaterThanOrEqual(1);
      expect(at('PUT', before) + at('GET', before) + at('DELETE', before)).toBe(0);
      before = c.requestCounts();
      await readAll(await c.snapshotReader(GEN_A, 1));
      expect(at('GET', before)).toBeGreaterThanOrEqual(1);
      expect(at('PUT', before) + at('DELETE', before)).toBe(0);
      before = c.requestCounts();
      await c.deleteSnapshot(GEN_A, 1);
      expect(at('DELETE', before)).toBeGreaterThanOrEqual(1);
      expect(at('PUT', before) + at('GET', before)).toBe(0);
    });

    it('sends no request for an idle replicated database while the shipper keeps polling', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'stn-idle-'));
      const dbPath = join(dir, 'app.db');
      const app = openSourceDb(dbPath);
      app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('before the window', 1);
      app.close();
      // Litestream's defaults otherwise (retention checked hourly, no scheduled snapshots or validation):
      // nothing is due inside the window but the polls.
      // In-process: pollsOf wraps the shipper itself, and the window is counted on this client's own counters.
      const r = await startReplication({ dbPath, monitorIntervalMs: 20, replicas: [{ client: c, syncIntervalMs: 10 }], inline: true });
      try {
        await r.sync();
        const before = c.requestCounts();
        expect(before.PUT).toBeGreaterThanOrEqual(2); // the snapshot and a segment: the client is the one in use
        // The window is counted in polls of the shipper (each one a full sync tick), not in time.
        await pollsOf(r.shipper, 10);
        expect(c.requestCounts()).toEqual(before);
      } finally {
        await r.close();
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('leaves no object behind when the body fails mid-write', async () => {
      async function* failing() {
        yield Buffer.from('partial data');
        throw new Error('source broke');
      }
      await expect(c.writeWalSegment({ generation: GEN_A, index: 0, offset: 0 }, failing())).rejects.toThrow(/source broke/);
      expect(await collect(c.walSegments(GEN_A))).toEqual([]);
    });
  });

  if (!options.lease) {
    describe(`ReplicaClient lease contract: ${name}`, () => {
      it('declares no lease primitives (so replication reports it has no atomic lease)', async () => {
        const fx = await factory();
        try {
          expect(supportsLease(fx.client)).toBe(false);
        } finally {
          await fx.cleanup();
        }
      });
    });
    return;
  }

  describe(`ReplicaClient lease contract: ${name}`, () => {
    let fx: ContractFixture;
    let c: LeaseCapableClient;
    const leases: ReplicaLease[] = [];
    beforeEach(async () => {
      fx = await factory();
      expect(supportsLease(fx.client)).toBe(true);
      c = fx.client as LeaseCapableClient;
    });
    afterEach(async () => {
      for (const l of leases.splice(0)) await l.release();
      await fx.cleanup();
    });
    const lease = (opts: Partial<ConstructorParameters<typeof ReplicaLease>[0]> = {}) => {
      const l = new ReplicaLease({ client: c, replica: 'r', ttlMs: 2000, ...opts });
      leases.push(l);
      return l;
    };
    const record = (instance: string, ttlMs = 2000): LeaseRecord => ({
      holder: { host: 'elsewhere', pid: 1, instance },
      acquiredAt: '2026-01-01T00:00:00.000Z',
      renewedAt: '2026-01-01T00:00:00.000Z',
      ttlMs,
    });

    it('has no lease object in an empty replica', async () => {
      expect(await c.readLease()).toBeUndefined();
    });

    it('creates the lease object only if there is none', async () => {
      const v1 = await c.writeLease(Buffer.from('first'), undefined);
      expect(v1).toBeTypeOf('string');
      expect(await c.writeLease(Buffer.from('second'), undefined)).toBeUndefined();
      const stored = await c.readLease();
      expect(stored?.body.toString()).toBe('first');
      expect(stored?.version).toBe(v1);
    });

    it('replaces the lease object only at the expected version', async () => {
      const v1 = (await c.writeLease(Buffer.from('one'), undefined))!;
      const v2 = await c.writeLease(Buffer.from('two'), v1);
      expect(v2).toBeTypeOf('string');
      expect(v2).not.toBe(v1);
      expect(await c.writeLease(Buffer.from('stale'), v1)).toBeUndefined();
      expect(await c.readLease()).toEqual({ body: Buffer.from('two'), version: v2 });
    });

    it('lets exactly one of many concurrent writers win', async () => {
      const v1 = (await c.writeLease(Buffer.from('base'), undefined))!;
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => c.writeLease(Buffer.from(`writer ${i}`), v1)));
      const winners = results.flatMap((v, i) => (v === undefined ? [] : [i]));
      expect(winners).toHaveLength(1);
      expect((await c.readLease())?.body.toString()).toBe(`writer ${winners[0]}`);
      const creators = await Promise.all(Array.from({ length: 4 }, () => c.writeLease(Buffer.from('x'), undefined)));
      expect(creators.every((v) => v === undefined)).toBe(true);
    });

    it('passes the start-up probe of conditional writes, which leaves no object behind', async () => {
      if (c.probeLease === undefined) {
        expect(c.type).toBe('file'); // link(2) is atomic wherever the file backend runs: nothing to probe
        return;
      }
      await c.writeLease(Buffer.from('the lease'), undefined);
      const before = (await fx.keys!()).sort();
      expect(before.some((k) => /(^|\/)lease\/[^/]+\.json$/.test(k))).toBe(true);
      await c.probeLease();
      expect((await fx.keys!()).sort()).toEqual(before);
      expect((await c.readLease())?.body.toString()).toBe('the lease');
      expect(await c.generations()).toEqual([]);
    });

    it('keeps the lease object out of the generation listing', async () => {
      await c.writeLease(Buffer.from('lease'), undefined);
      await c.writeSnapshot(GEN_A, 0, body('snap'));
      expect(await c.generations()).toEqual([GEN_A]);
    });

    it('ReplicaLease: one holder at a time; a release hands it over at once', async () => {
      const a = lease({ identity: { instance: 'aaaa' } });
      const b = lease({ identity: { instance: 'bbbb' } });
      expect(await a.tryAcquire()).toBeUndefined();
      expect(a.held).toBe(true);
      const seen = await b.tryAcquire();
      expect(seen?.record.holder?.instance).toBe('aaaa');
      expect(() => b.assertHeld()).toThrow(expect.objectContaining({ code: 'LEASE_LOST' }));
      await a.release();
      expect(() => a.assertHeld()).toThrow(expect.objectContaining({ code: 'LEASE_LOST' }));
      expect((await b.read())?.record.holder).toBeNull();
      expect(await b.tryAcquire()).toBeUndefined();
      expect((await b.read())?.record.holder?.instance).toBe('bbbb');
    });

    it('ReplicaLease: a lease nobody renews is taken once it stayed unchanged for its TTL', async () => {
      await c.writeLease(encodeLeaseRecord(record('dead', 600)), undefined);
      const b = lease({ identity: { instance: 'bbbb' }, pollMs: 50 });
      // The first look only starts the clock: the holder may have renewed just before.
      expect((await b.tryAcquire())?.record.holder?.instance).toBe('dead');
      await b.acquire(AbortSignal.timeout(30_000));
      expect(b.held).toBe(true);
      expect((await b.read())?.record.holder?.instance).toBe('bbbb');
    });

    it('ReplicaLease: a holder whose lease is broken loses it at its next renewal and stops writing', async () => {
      // Nothing to break yet: a NotFoundError, as for any missing object.
      await expect(breakLease(c, 'aaaa')).rejects.toBeInstanceOf(NotFoundError);
      const a = lease({ identity: { instance: 'aaaa' }, ttlMs: 900 });
      await a.acquire();
      const lost = new Promise((resolve) => a.once('lost', resolve));
      await breakLease(c, 'aaaa');
      expect(await lost).toMatchObject({ code: 'LEASE_LOST' });
      expect(a.held).toBe(false);
      expect(a.lostSignal.aborted).toBe(true);
      expect(() => a.assertHeld()).toThrow(expect.objectContaining({ code: 'LEASE_LOST' }));
      // Breaking names the holder: a lease that moved on is not broken by mistake.
      await c.writeLease(encodeLeaseRecord(record('cccc')), (await c.readLease())!.version);
      await expect(breakLease(c, 'aaaa')).rejects.toMatchObject({ code: 'LEASE_HELD' });
    });
  });
}
