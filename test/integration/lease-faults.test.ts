/**
 * The lease on s3, gcs and abs when the store misbehaves (issue 14), through a proxy in front of the real
 * test servers:
 * - a lease write whose reply is lost (the store took it; the client sees a dropped connection) is never
 *   counted as done, and is then recognised as ours instead of being taken for someone else's: an
 *   acquisition is completed at the next look, a renewal keeps the lease;
 * - a holder whose store is down stops writing before another instance, which reaches the store, can
 *   take over (the order of the two events, in one process: the holder's deadline is TTL - margin after
 *   its last renewal was sent, the waiter's takeover at least TTL after it saw that renewal).
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { AbsReplicaClient } from '../../src/client/abs-client.js';
import { GcsReplicaClient } from '../../src/client/gcs-client.js';
import type { ReplicaClient } from '../../src/client/replica-client.js';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { ReplicaLease } from '../../src/lease/replica-lease.js';
import { recordingLogger } from '../helpers/recording-logger.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer } from '../servers/abs-server.js';
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js';
import { createBucket } from '../servers/s3-server.js';

interface Backend {
  name: string;
  /** A fresh replica path, and a client for it through `endpoint` (the proxy or the server). */
  setup(): Promise<{ origin: string; client(endpoint: string): ReplicaClient }>;
}

const BACKENDS: Backend[] = [
  {
    name: 's3',
    setup: async () => {
      const origin = inject('s3Endpoint');
      const bucket = `lease-faults-${randomBytes(4).toString('hex')}`;
      await createBucket(origin, bucket);
      return {
        origin,
        client: (endpoint) =>
          new S3ReplicaClient({
            bucket,
            path: 'db',
            endpoint,
            region: 'us-east-1',
            accessKeyId: 'k',
            secretAccessKey: 's',
            requestTimeoutMs: 500,
          }),
      };
    },
  },
  {
    name: 'gcs',
    setup: async () => {
      const bucket = `lease-faults-${randomBytes(4).toString('hex')}`;
      return {
        origin: inject('gcsEndpoint'),
        client: (endpoint) => new GcsReplicaClient({ bucket, path: 'db', endpoint, requestTimeoutMs: 500 }),
      };
    },
  },
  {
    name: 'abs',
    setup: async () => {
      const url = new URL(inject('absEndpoint'));
      const container = `lease-faults-${randomBytes(4).toString('hex')}`;
      await createContainer(url.href, container);
      return {
        origin: url.origin,
        client: (endpoint) =>
          new AbsReplicaClient({
            accountName: AZURITE_ACCOUNT,
            accountKey: AZURITE_KEY,
            bucket: container,
            path: 'db',
            endpoint: `${endpoint}${url.pathname}`,
            tryTimeoutMs: 500,
          }),
      };
    },
  },
];

const proxies: FaultProxy[] = [];
const leases: ReplicaLease[] = [];
afterEach(async () => {
  for (const l of leases.splice(0)) await l.release();
  for (const p of proxies.splice(0)) await p.close();
});

/** Polls `cond` until it holds (generous timeout; no timing is asserted). */
async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms: ${cond.toString()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const leaseWrite = (method: string, url: string) => (method === 'PUT' || method === 'POST') && /lease(%2F|\/)lease\.json/.test(url);

describe.each(BACKENDS)('lease on $name when replies are lost or the store is down', (backend) => {
  async function setup() {
    const s = await backend.setup();
    const proxy = await startFaultProxy(s.origin);
    proxies.push(proxy);
    return { proxy, viaProxy: s.client(proxy.endpoint), direct: s.client(s.origin) };
  }
  const lease = (client: ReplicaClient, instance: string, log = recordingLogger(), ttlMs = 1500) => {
    const l = new ReplicaLease({ client, replica: 'r', ttlMs, identity: { instance }, logger: log });
    leases.push(l);
    return { l, log };
  };

  // The rule is ReplicaLease's, the same for every backend: defined for one of them only (not reported
  // as skipped on the others).
  if (backend.name === 's3')
    it("an acquisition whose reply was lost is completed at the next look, not waited for as someone else's", async () => {
      const { proxy, viaProxy, direct } = await setup();
      const { l, log } = lease(viaProxy, 'aaaa');
      proxy.loseReplies(leaseWrite, 1);
      await l.acquire(AbortSignal.timeout(30_000));
      expect(proxy.faults).toBe(1);
      expect(l.held).toBe(true);
      expect((await l.read())?.record.holder?.instance).toBe('aaaa');
      const msgs = log.lines.map((x) => x.msg);
      expect(msgs).toContain('replica lease cannot be read or written; retrying (nothing is written to the replica meanwhile)');
      expect(msgs).toContain('replica lease acquired');
      expect(msgs.some((m) => /held by another instance|taken over/.test(m))).toBe(false);
      // Through the store itself: the record is the one the holder keeps renewing.
      const seen = (await direct.readLease!())!.version;
      await waitFor(async () => (await direct.readLease!())?.version !== seen);
    });

  it('a renewal whose reply was lost is recognised as ours: the holder keeps the lease', async () => {
    const { proxy, viaProxy, direct } = await setup();
    const { l, log } = lease(viaProxy, 'aaaa');
    await l.acquire();
    proxy.loseReplies(leaseWrite, 1);
    await waitFor(() => proxy.faults === 1 && log.lines.some((x) => x.msg.startsWith('replica lease renewal failed')));
    // Two more renewals land after it (the first of them was refused: the store had the lost one).
    const versions = new Set<string>();
    await waitFor(async () => {
      versions.add((await direct.readLease!())!.version);
      return versions.size >= 3 || l.state !== 'held';
    });
    expect(l.held).toBe(true);
    expect(log.lines.filter((x) => x.level === 'error')).toEqual([]);
    expect((await l.read())?.record.holder?.instance).toBe('aaaa');
  });

  it('a holder that cannot reach the store stops writing before an instance that can takes over', async () => {
    const { proxy, viaProxy, direct } = await setup();
    const { l: holder } = lease(viaProxy, 'aaaa');
    await holder.acquire();
    const { l: waiter, log: waiterLog } = lease(direct, 'bbbb');
    const events: string[] = [];
    holder.once('lost', () => events.push('holder stopped writing'));
    const taking = waiter.acquire(AbortSignal.timeout(30_000)).then(() => events.push('waiter took over'));
    await waitFor(() => waiterLog.lines.some((x) => x.msg.startsWith('replica lease held by another instance')));
    proxy.mode = 'drop';
    await taking;
    expect(events).toEqual(['holder stopped writing', 'waiter took over']);
    expect(() => holder.assertHeld()).toThrow(expect.objectContaining({ code: 'LEASE_LOST' }));
    expect(waiterLog.lines.map((x) => x.msg)).toContain('replica lease taken over from an instance that stopped renewing it');
  });

  // Which failures are retried is read from each SDK's own error shape: shown on every backend.
  it('at the first look, an outage shorter than a TTL is ridden out; a refusal (403) is an error at once', async () => {
    const { proxy, viaProxy } = await setup();
    // A TTL that leaves room for the probe's own tries before the first failure is reported.
    const { l, log } = lease(viaProxy, 'aaaa', recordingLogger(), 10_000);
    proxy.mode = 'error500';
    const taking = l.acquire(AbortSignal.timeout(30_000));
    await waitFor(() => proxy.faults > 0 && log.lines.some((x) => x.msg.startsWith('replica lease cannot be read or written; retrying')));
    proxy.mode = 'pass';
    await taking;
    expect(l.held).toBe(true);
    expect(log.lines.find((x) => x.msg.startsWith('replica lease cannot be read or written'))?.fields).toMatchObject({
      until: '10000ms without an answer, then an error',
    });

    const { proxy: denying, viaProxy: denied } = await setup();
    const { l: refused, log: refusedLog } = lease(denied, 'bbbb');
    denying.mode = 'error403';
    const err = await refused.acquire(AbortSignal.timeout(30_000)).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/taking the lease at .*(403|AccessDenied)/);
    expect(denying.faults).toBeGreaterThan(0);
    // Not retried for a TTL: no retry was announced, and the error does not say the store kept failing.
    expect(err?.message).not.toMatch(/kept failing/);
    expect(refusedLog.lines.map((x) => x.msg)).not.toContain(
      'replica lease cannot be read or written; retrying (nothing is written to the replica meanwhile)',
    );
    expect(refused.looked).toBe(false);
  });
});
