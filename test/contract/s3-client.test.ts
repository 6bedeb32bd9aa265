import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { createBucket, startS3Server, type S3Server } from '../servers/s3-server.js';
import { ReplicaLease } from '../../src/lease/replica-lease.js';
import { describeReplicaClientContract } from './replica-client-contract.js';
import { resumableChunks } from '../../src/replica/object-fetch.js';

describeReplicaClientContract(
  's3 (fauxqs)',
  async () => {
    const endpoint = inject('s3Endpoint');
    const bucket = `contract-${randomBytes(4).toString('hex')}`;
    await createBucket(endpoint, bucket);
    const client = new S3ReplicaClient({
      bucket,
      path: 'db/replica',
      endpoint,
      region: 'us-east-1',
      accessKeyId: 'test',
      secretAccessKey: 'test',
      listPageSize: 3,
    });
    // S3 LastModified has one-second resolution.
    return { client, cleanup: async () => undefined, clockSlackMs: 1500, keys: () => rawKeys(endpoint, bucket, 'db/replica/') };
  },
  { lease: true },
);

describeReplicaClientContract(
  's3 (fauxqs), checksums only when required',
  async () => {
    const endpoint = inject('s3Endpoint');
    const bucket = `contract-wr-${randomBytes(4).toString('hex')}`;
    await createBucket(endpoint, bucket);
    const client = new S3ReplicaClient({
      bucket,
      path: '',
      endpoint,
      accessKeyId: 'test',
      secretAccessKey: 'test',
      checksums: 'when_required',
      listPageSize: 2,
    });
    return { client, cleanup: async () => undefined, clockSlackMs: 1500, keys: () => rawKeys(endpoint, bucket, '') };
  },
  { lease: true },
);

/** Every key under `prefix`, listed with the SDK directly. */
async function rawKeys(endpoint: string, bucket: string, prefix: string): Promise<string[]> {
  const raw = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  try {
    const out = await raw.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (out.Contents ?? []).map((o) => o.Key!);
  } finally {
    raw.destroy();
  }
}

describe('s3 lease on a store that ignores conditional writes (fauxqs as shipped)', () => {
  let server: S3Server;
  beforeAll(async () => {
    server = await startS3Server({ conditionalWrites: false });
  });
  afterAll(() => server.stop());

  it('the start-up probe finds out: LEASE_UNSUPPORTED, naming the replica and `lease: false`; nothing is left behind', async () => {
    const bucket = `ignores-${randomBytes(4).toString('hex')}`;
    await createBucket(server.endpoint, bucket);
    const client = new S3ReplicaClient({
      bucket,
      path: 'app',
      endpoint: server.endpoint,
      region: 'us-east-1',
      accessKeyId: 'test',
      secretAccessKey: 'test',
    });
    await expect(client.probeLease()).rejects.toMatchObject({
      code: 'LEASE_UNSUPPORTED',
      message: expect.stringMatching(
        /second If-None-Match: \* write of app\/lease\/probe-[0-9a-f]{16} succeeded: the store ignores the condition.*set `lease: false` on this replica/,
      ),
    });
    const lease = new ReplicaLease({ client, replica: 'backup', ttlMs: 2000 });
    await expect(lease.acquire()).rejects.toMatchObject({
      code: 'LEASE_UNSUPPORTED',
      message: expect.stringMatching(
        /^replica backup: taking the lease at s3:\/\/ignores-\w+\/app: the store does not enforce conditional writes/,
      ),
    });
    expect(lease.state).toBe('idle');
    // The probe's object is gone, and no lease object was written.
    expect(await rawKeys(server.endpoint, bucket, '')).toEqual([]);
  });
});

describe('s3 deleteGeneration', () => {
  it('deletes the generation by its prefix with the slash, never a key that only starts with its name (P6)', async () => {
    const endpoint = inject('s3Endpoint');
    const bucket = `p6-${randomBytes(4).toString('hex')}`;
    await createBucket(endpoint, bucket);
    const client = new S3ReplicaClient({ bucket, path: 'db', endpoint, region: 'us-east-1', accessKeyId: 'test', secretAccessKey: 'test' });
    const gen = '0123456789abcdef';
    await client.writeSnapshot(gen, 0, Readable.from([Buffer.from('snapshot')]));
    await client.writeWalSegment({ generation: gen, index: 0, offset: 0 }, Readable.from([Buffer.from('segment')]));
    // Written by someone else under the same path: Litestream's prefix (no slash) would take them too.
    const raw = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    const foreign = [`db/generations/${gen}0/snapshots/00000000.snapshot.lz4`, `db/generations/${gen}.notes`];
    for (const Key of foreign) await raw.send(new PutObjectCommand({ Bucket: bucket, Key, Body: 'keep me' }));
    await client.deleteGeneration(gen);
    const left = await raw.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'db/' }));
    expect((left.Contents ?? []).map((o) => o.Key).sort()).toEqual([...foreign].sort());
    raw.destroy();
  });
});

/**
 * A recording proxy in front of the local S3 server: what the client sends, on the wire. `refuseNext`
 * answers the next request that did not come through the SDK with a 403, as a store that does not
 * accept it would.
 */
async function recordingProxy(target: string) {
  const seen: { method: string; url: string; viaSdk: boolean; status: number; checksumMode?: string }[] = [];
  const up = new URL(target);
  let refuseNext = false;
  let cutNext: number | undefined;
  const server = createServer((req, res) => {
    // The SDK adds its invocation id to every request it sends.
    const viaSdk = req.headers['amz-sdk-invocation-id'] !== undefined;
    if (!viaSdk && refuseNext) {
      refuseNext = false;
      req.resume();
      seen.push({ method: req.method!, url: req.url!, viaSdk, status: 403 });
      res
        .writeHead(403, { 'content-type': 'application/xml' })
        .end('<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code><Message>refused by the test</Message></Error>');
      return;
    }
    const fwd = httpRequest({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      const checksumMode = req.headers['x-amz-checksum-mode'];
      seen.push({
        method: req.method!,
        url: req.url!,
        viaSdk,
        status: r.statusCode!,
        ...(typeof checksumMode === 'string' ? { checksumMode } : {}),
      });
      res.writeHead(r.statusCode!, r.headers);
      const cut = !viaSdk && req.method === 'GET' ? cutNext : undefined;
      if (cut === undefined) return void r.pipe(res);
      // The connection drops after `cut` bytes of the body.
      cutNext = undefined;
      let sent = 0;
      r.on('data', (chunk: Buffer) => {
        if (sent >= cut) return;
        const part = chunk.subarray(0, cut - sent);
        sent += part.length;
        res.write(part, () => {
          if (sent >= cut) res.destroy();
        });
      });
    });
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    seen,
    refuseNext: () => (refuseNext = true),
    /** The next GET not sent by the SDK: its connection drops after `bytes` of the body. */
    cutNext: (bytes: number) => (cutNext = bytes),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('s3 reads', () => {
  it('ask for no stored checksum (x-amz-checksum-mode): the SDK would hash whole snapshots on the event loop; LZ4 content checksums cover them', async () => {
    const endpoint = inject('s3Endpoint');
    const bucket = `reads-${randomBytes(4).toString('hex')}`;
    await createBucket(endpoint, bucket);
    const proxy = await recordingProxy(endpoint);
    const client = new S3ReplicaClient({
      bucket,
      path: 'db',
      endpoint: proxy.endpoint,
      region: 'us-east-1',
      accessKeyId: 'test',
      secretAccessKey: 'test',
    });
    try {
      const gen = '0123456789abcdef';
      const body = randomBytes(300_000);
      await client.writeSnapshot(gen, 0, Readable.from([body]));
      const chunks: Buffer[] = [];
      for await (const c of await client.snapshotReader(gen, 0)) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).equals(body)).toBe(true);
      const gets = proxy.seen.filter((r) => r.method === 'GET' && r.url.includes('/snapshots/'));
      expect(gets).toHaveLength(1);
      expect(gets[0]!.checksumMode).toBeUndefined();
    } finally {
      await proxy.close();
    }
  });
});

describe('s3 lease writes after the first: signed and sent without the SDK (s3-lease-put.ts)', () => {
  it('renewals and the release go out without the SDK and keep their conditions; a refusal sends them through the SDK from then on', async () => {
    const bucket = `lean-${randomBytes(4).toString('hex')}`;
    await createBucket(inject('s3Endpoint'), bucket);
    const proxy = await recordingProxy(inject('s3Endpoint'));
    try {
      const client = new S3ReplicaClient({
        bucket,
        path: 'db/my replica',
        endpoint: proxy.endpoint,
        region: 'us-east-1',
        accessKeyId: 'test',
        secretAccessKey: 'test',
      });
      const leaseWrites = () => proxy.seen.filter((s) => s.method === 'PUT' && s.url.includes('/lease/lease.json'));
      const v1 = (await client.writeLease(Buffer.from('one'), undefined))!;
      expect(leaseWrites().map((s) => s.viaSdk)).toEqual([true]);
      // Through LeasePut: the conditions hold (a stale version and a second create are refused).
      const v2 = (await client.writeLease(Buffer.from('two'), v1))!;
      expect(v2).toMatch(/^".+"$/);
      expect(await client.writeLease(Buffer.from('stale'), v1)).toBeUndefined();
      expect(await client.writeLease(Buffer.from('again'), undefined)).toBeUndefined();
      expect(await client.readLease()).toEqual({ body: Buffer.from('two'), version: v2 });
      expect(leaseWrites().map((s) => [s.viaSdk, s.status])).toEqual([
        [true, 200],
        [false, 200],
        [false, 412],
        [false, 412],
      ]);
      // The key's space was sent encoded as the SDK encodes it, to the same path.
      expect(new Set(leaseWrites().map((s) => s.url.split('?')[0]))).toEqual(new Set([`/${bucket}/db/my%20replica/lease/lease.json`]));
      expect(client.requestCounts().PUT).toBe(4);

      // A store that refuses such a request: the same write goes through the SDK, and so do the next ones.
      proxy.refuseNext();
      const v3 = (await client.writeLease(Buffer.from('three'), v2))!;
      expect(await client.readLease()).toEqual({ body: Buffer.from('three'), version: v3 });
      expect(await client.writeLease(Buffer.from('four'), v3)).toMatch(/^".+"$/);
      expect(
        leaseWrites()
          .slice(4)
          .map((s) => [s.viaSdk, s.status]),
      ).toEqual([
        [false, 403],
        [true, 200],
        [true, 200],
      ]);
    } finally {
      await proxy.close();
    }
  });
});

describe('s3 reads after the first: signed and sent without the SDK (s3-object-get.ts)', () => {
  it('snapshots and segments come back byte for byte from the path the SDK used; a missing one is NOT_FOUND; a refusal sends every read through the SDK from then on', async () => {
    const bucket = `lean-get-${randomBytes(4).toString('hex')}`;
    await createBucket(inject('s3Endpoint'), bucket);
    const proxy = await recordingProxy(inject('s3Endpoint'));
    try {
      const client = new S3ReplicaClient({
        bucket,
        path: 'db/my (replica)',
        endpoint: proxy.endpoint,
        region: 'us-east-1',
        accessKeyId: 'test',
        secretAccessKey: 'test',
      });
      const gen = '0123456789abcdef';
      const bodies = [randomBytes(200_000), randomBytes(5), randomBytes(70_000)];
      await client.writeSnapshot(gen, 0, Readable.from([bodies[0]!]));
      await client.writeWalSegment({ generation: gen, index: 0, offset: 0 }, Readable.from([bodies[1]!]));
      await client.writeWalSegment({ generation: gen, index: 0, offset: 4152 }, Readable.from([bodies[2]!]));
      const read = async (r: Promise<Readable>) => {
        const chunks: Buffer[] = [];
        for await (const c of await r) chunks.push(c as Buffer);
        return Buffer.concat(chunks);
      };
      const gets = () => proxy.seen.filter((s) => s.method === 'GET' && s.url.includes('/generations/'));
      expect((await read(client.snapshotReader(gen, 0))).equals(bodies[0]!)).toBe(true);
      expect((await read(client.walSegmentReader({ generation: gen, index: 0, offset: 0 }))).equals(bodies[1]!)).toBe(true);
      expect((await read(client.walSegmentReader({ generation: gen, index: 0, offset: 4152 }))).equals(bodies[2]!)).toBe(true);
      expect(gets().map((s) => [s.viaSdk, s.status])).toEqual([
        [true, 200],
        [false, 200],
        [false, 200],
      ]);
      // The prefix's characters were sent encoded as the SDK encodes them, to the same paths.
      const prefix = `/${bucket}/db/my%20%28replica%29/generations/${gen}`;
      expect(gets().map((s) => s.url.split('?')[0])).toEqual([
        `${prefix}/snapshots/00000000.snapshot.lz4`,
        `${prefix}/wal/00000000_00000000.wal.lz4`,
        `${prefix}/wal/00000000_00001038.wal.lz4`,
      ]);
      await expect(client.walSegmentReader({ generation: gen, index: 1, offset: 0 })).rejects.toMatchObject({ code: 'NOT_FOUND' });
      expect(gets().at(-1)).toMatchObject({ viaSdk: false, status: 404 });
      expect(client.requestCounts().GET).toBe(4);

      // A connection that drops midway: the read fails (naming the object) and resumes where it stopped.
      proxy.cutNext(50_000);
      const source = { where: 'the snapshot', size: bodies[0]!.length, open: () => client.snapshotReader(gen, 0) };
      const retried: unknown[] = [];
      const resumed: Buffer[] = [];
      for await (const c of resumableChunks(source, { backoffMs: 1, onRetry: (_w, _a, err) => retried.push(err) })) resumed.push(c);
      expect(Buffer.concat(resumed).equals(bodies[0]!)).toBe(true);
      expect(retried).toHaveLength(1);
      expect(String((retried[0] as Error).message)).toContain(`/generations/${gen}/snapshots/00000000.snapshot.lz4`);
      expect(
        gets()
          .slice(4)
          .map((s) => s.viaSdk),
      ).toEqual([false, false]);

      // A store that refuses such a request: the same read goes through the SDK, and so do the next ones.
      proxy.refuseNext();
      expect((await read(client.walSegmentReader({ generation: gen, index: 0, offset: 0 }))).equals(bodies[1]!)).toBe(true);
      expect((await read(client.snapshotReader(gen, 0))).equals(bodies[0]!)).toBe(true);
      expect(
        gets()
          .slice(6)
          .map((s) => [s.viaSdk, s.status]),
      ).toEqual([
        [false, 403],
        [true, 200],
        [true, 200],
      ]);
    } finally {
      await proxy.close();
    }
  });
});
