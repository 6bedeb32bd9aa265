/**
 * The `s3` backend (AWS S3 and S3-compatible stores) with the official SDK, loaded only when used.
 * Keys are Litestream's layout under the configured prefix; createdAt is the listing's LastModified
 * (as Litestream uses it); uploads stream through @aws-sdk/lib-storage (multipart above 5 MiB).
 * The lease (src/lease/) is one object, `<path>/lease/lease.json`, changed with conditional PutObjects
 * (If-None-Match / If-Match on its ETag), which a start-up probe checks the store enforces.
 * Loading the SDK, the S3Clients' settings and reading its errors: s3-sdk.ts.
 */
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { NotFoundError, ReplicateError } from '../errors.js';
import { describeCloudError, withErrorContext } from './cloud-error.js';
import { isGenerationName } from '../layout.js';
import { ObjectStoreClient, type StoredObject } from './object-store.js';
import { LeasePut, recordLeaseTarget } from './s3-lease-put.js';
import { isMissing, loadLibStorage, loadSdk, lookUpRegion, makeS3Client, statusOf } from './s3-sdk.js';
import { ObjectGet, recordObjectGets, tailOf } from './s3-object-get.js';
import { countingStream, type ObjectBody, type OpOptions, type ReplicaClient, type StoredLease } from './replica-client.js';

export interface S3ReplicaClientOptions {
  bucket: string;
  /** Key prefix ("" or "." for the bucket root). */
  path?: string;
  region?: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  /** Accept any TLS certificate from the endpoint (a self-signed one on a private store). */
  skipVerify?: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  /**
   * 'when_required' sends checksums only where S3 requires them: some S3-compatible stores (Cloudflare
   * R2, Backblaze B2, Hetzner) reject or mangle the SDK's default trailing checksums.
   */
  checksums?: 'when_supported' | 'when_required';
  /** A request with no progress for this long fails and is retried (default 30 s). */
  requestTimeoutMs?: number;
  /** Objects per listing page (default: the store's maximum, 1000 or 5000); small values are for tests. */
  listPageSize?: number;
}

const DELETE_BATCH = 1000;

export class S3ReplicaClient extends ObjectStoreClient implements ReplicaClient {
  readonly type = 's3';
  protected readonly scheme = 's3';
  private client: Promise<{ s3: S3Client; sdk: typeof import('@aws-sdk/client-s3'); region: string }> | undefined;
  private leaseClient: Promise<{ s3: S3Client; sdk: typeof import('@aws-sdk/client-s3') }> | undefined;
  /** The lease's writes after the first, signed and sent without the SDK's middleware (s3-lease-put.ts). */
  private leasePut: LeasePut | undefined;
  /** The store refused a request sent that way: the lease's writes stay with the SDK. */
  private leasePutRefused = false;
  /** Reads of snapshots and segments after the first, signed and sent without the SDK's middleware (s3-object-get.ts). */
  private objectGet: ObjectGet | undefined;
  private objectGetRefused = false;

  constructor(private readonly opts: S3ReplicaClientOptions) {
    super(opts, `s3://${opts.bucket}`);
  }

  private sdk() {
    this.client ??= (async () => {
      const sdk = loadSdk();
      const o = this.opts;
      const region = o.region ?? (o.endpoint !== undefined ? 'us-east-1' : await lookUpRegion(sdk, o, this.counts));
      // The SDK's own retries with backoff for 5xx, throttling and resets.
      const s3 = makeS3Client(sdk, this.opts, region, 5, this.counts);
      recordObjectGets(s3, this.objectsDir(), (target) => {
        if (!this.objectGetRefused) this.objectGet ??= new ObjectGet(s3, target);
      });
      return { s3, sdk, region };
    })();
    return this.client;
  }

  /**
   * The client for the lease's conditional writes: the same settings, but each request is sent once. A
   * retried conditional PUT whose first try committed (its reply lost) would be refused by the store as
   * "condition failed" — our own write seen as someone else's. Sent once, such an outcome throws, and
   * ReplicaLease looks again (see its handling of a failed write).
   */
  private leaseSdk() {
    this.leaseClient ??= (async () => {
      const { sdk, region } = await this.sdk();
      const s3 = makeS3Client(sdk, this.opts, region, 1, this.counts);
      recordLeaseTarget(s3, this.layout.leaseObjectKey(), (target) => {
        if (!this.leasePutRefused) this.leasePut ??= new LeasePut(s3, target);
      });
      return { s3, sdk };
    })();
    return this.leaseClient;
  }

  private fail(doing: string, key: string, err: unknown): ReplicateError {
    return new ReplicateError('IO', `[s3] ${doing} s3://${this.opts.bucket}/${key}: ${describeCloudError(err)}`, {
      cause: err,
      details: { bucket: this.opts.bucket, key },
    });
  }

  /** Every page of a listing (never a partial result): keys and common prefixes. */
  private async list(prefix: string, delimiter: boolean, opts?: OpOptions) {
    const { s3, sdk } = await this.sdk();
    const objects: { key: string; size: number; lastModified: Date }[] = [];
    const prefixes: string[] = [];
    let token: string | undefined;
    try {
      do {
        const out = await s3.send(
          new sdk.ListObjectsV2Command({
            Bucket: this.opts.bucket,
            Prefix: prefix,
            ContinuationToken: token,
            ...(this.opts.listPageSize ? { MaxKeys: this.opts.listPageSize } : {}),
            ...(delimiter ? { Delimiter: '/' } : {}),
          }),
          { abortSignal: opts?.signal },
        );
        for (const o of out.Contents ?? []) objects.push({ key: o.Key!, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) });
        for (const p of out.CommonPrefixes ?? []) if (p.Prefix) prefixes.push(p.Prefix);
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.fail('listing', prefix, err);
    }
    return { objects, prefixes };
  }

  async generations(opts?: OpOptions): Promise<string[]> {
    const { prefixes } = await this.list(`${this.layout.generationsDir()}/`, true, opts);
    return [...new Set(prefixes.map((p) => posix.basename(p)).filter(isGenerationName))].sort();
  }

  /** Snapshot and WAL directories are listed with the delimiter, as Litestream does. */
  protected async listObjects(prefix: string, opts?: OpOptions): Promise<StoredObject[]> {
    const { objects } = await this.list(prefix, true, opts);
    return objects.map((o) => ({ key: o.key, size: o.size, createdAt: o.lastModified }));
  }

  /** Through lib-storage: one PutObject, or a multipart upload above 5 MiB (each part counts as a PUT). */
  protected async putObject(key: string, body: ObjectBody, opts?: OpOptions): Promise<number> {
    const { s3 } = await this.sdk();
    const { Upload } = loadLibStorage();
    const { stream: counted, bytes } = countingStream(body);
    try {
      const upload = new Upload({
        client: s3,
        params: { Bucket: this.opts.bucket, Key: key, Body: counted },
        queueSize: 4,
        partSize: 5 * 1024 * 1024,
      });
      opts?.signal?.addEventListener('abort', () => void upload.abort(), { once: true });
      await upload.done();
    } catch (err) {
      throw this.fail('writing', key, err);
    }
    return bytes();
  }

  /** Where snapshots and WAL segments live: the keys whose reads may go through ObjectGet. */
  private objectsDir(): string {
    return `${this.layout.generationsDir()}/`;
  }

  protected async getObject(key: string, opts?: OpOptions): Promise<Readable> {
    const { s3, sdk } = await this.sdk();
    const lean = this.objectGet;
    const tail = lean ? tailOf(key, this.objectsDir()) : undefined;
    const body = lean && tail !== undefined ? await this.leanGet(lean, key, tail, opts?.signal) : undefined;
    if (body) return withErrorContext(body, (e) => this.fail('reading', key, e));
    try {
      const out = await s3.send(new sdk.GetObjectCommand({ Bucket: this.opts.bucket, Key: key }), { abortSignal: opts?.signal });
      return withErrorContext(out.Body as Readable, (e) => this.fail('reading', key, e));
    } catch (err) {
      if (isMissing(err)) throw this.missing(key, err);
      throw this.fail('reading', key, err);
    }
  }

  private missing(key: string, cause: unknown): NotFoundError {
    return new NotFoundError(`[s3] object not found: s3://${this.opts.bucket}/${key}`, {
      cause,
      details: { bucket: this.opts.bucket, key },
    });
  }

  /**
   * A GetObject through ObjectGet: the body of a 200, NOT_FOUND for a 404, as the SDK's answers give
   * them. Undefined — send it through the SDK — for anything else: a 5xx, throttling or no answer (a
   * keep-alive socket the store closed) get the SDK's retries, and a refusal of the request itself
   * (400, 403, a redirect) sends every read through the SDK from then on (the replayed request may be
   * what the store objects to). A read has no side effects, so sending it again is always safe.
   */
  private async leanGet(lean: ObjectGet, key: string, tail: string, signal: AbortSignal | undefined): Promise<Readable | undefined> {
    this.counts.add('GET');
    let a;
    try {
      a = await lean.send(tail, signal);
    } catch (err) {
      if (signal?.aborted) throw this.fail('reading', key, err);
      return undefined;
    }
    if (a.status === 200 && 'body' in a) return a.body;
    if (a.status === 404) {
      throw this.missing(
        key,
        Object.assign(new Error(a.message ?? 'The specified key does not exist.'), {
          name: a.code ?? 'NotFound',
          $metadata: { httpStatusCode: 404 },
        }),
      );
    }
    if (a.status < 500 && a.status !== 429) {
      this.objectGet = undefined;
      this.objectGetRefused = true;
    }
    return undefined;
  }

  /** Batched, idempotent (deleting a missing key succeeds in S3). */
  protected async deleteKeys(keys: string[], opts?: OpOptions): Promise<void> {
    const { s3, sdk } = await this.sdk();
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      let out;
      try {
        out = await s3.send(
          new sdk.DeleteObjectsCommand({ Bucket: this.opts.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
          { abortSignal: opts?.signal },
        );
      } catch (err) {
        throw this.fail('deleting', batch[0]!, err);
      }
      // Per-key failures come back in a 200: the batch failed all the same, reported as the request's would be.
      const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0)
        throw this.fail('deleting', batch[0]!, new Error(failed.map((e) => `${e.Key}: ${e.Code} ${e.Message ?? ''}`).join('; ')));
    }
  }

  async deleteGeneration(generation: string, opts?: OpOptions): Promise<void> {
    // With the trailing slash: Litestream's prefix without it also matches other generations' keys (docs/compatibility.md, Coverage).
    const { objects } = await this.list(`${this.layout.generationDir(generation)}/`, false, opts);
    await this.deleteKeys(
      objects.map((o) => o.key),
      opts,
    );
  }

  /** The lease object and its ETag, from one response (so they always belong together). */
  async readLease(opts?: OpOptions): Promise<StoredLease | undefined> {
    const { s3, sdk } = await this.sdk();
    const key = this.layout.leaseObjectKey();
    let body: Buffer, etag: string | undefined;
    try {
      const out = await s3.send(new sdk.GetObjectCommand({ Bucket: this.opts.bucket, Key: key }), { abortSignal: opts?.signal });
      body = Buffer.from(await out.Body!.transformToByteArray());
      etag = out.ETag;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.fail('reading', key, err);
    }
    if (!etag) throw this.fail('reading', key, new Error('the store answered without an ETag, which the lease compares against'));
    return { body, version: etag };
  }

  protected readonly leaseConditions = {
    bogusVersion: '"00000000000000000000000000000000"',
    create: 'If-None-Match: *',
    replace: 'If-Match',
  };

  protected async removeProbe(key: string, signal?: AbortSignal): Promise<void> {
    const { s3, sdk } = await this.sdk();
    await s3.send(new sdk.DeleteObjectCommand({ Bucket: this.opts.bucket, Key: key }), { abortSignal: signal });
  }

  /**
   * One PutObject (never multipart: the condition would then sit on CompleteMultipartUpload) with
   * If-None-Match: * (create only) or If-Match: <ETag> (replace only that version), sent once. The ETag
   * comes back quoted and is passed back verbatim.
   */
  protected async conditionalPut(key: string, body: Buffer, expected: string | undefined, opts?: OpOptions): Promise<string | undefined> {
    const { s3, sdk } = await this.leaseSdk();
    let out: { ETag?: string | undefined };
    try {
      const lean = key === this.layout.leaseObjectKey() ? this.leasePut : undefined;
      const answer = lean ? await this.leanPut(lean, body, expected, opts?.signal) : undefined;
      out =
        answer ??
        (await s3.send(
          new sdk.PutObjectCommand({
            Bucket: this.opts.bucket,
            Key: key,
            Body: body,
            ContentType: 'application/json',
            ...(expected === undefined ? { IfNoneMatch: '*' } : { IfMatch: expected }),
          }),
          { abortSignal: opts?.signal },
        ));
    } catch (err) {
      const status = statusOf(err);
      const name = (err as { name?: string }).name;
      // Someone else wrote first (412), or a concurrent conditional write on the key (409
      // ConditionalRequestConflict): nothing of ours was written.
      if (status === 412 || name === 'PreconditionFailed' || status === 409 || name === 'ConditionalRequestConflict') return undefined;
      // If-Match on a key that is not there (AWS answers 404; Ceph 412).
      if (expected !== undefined && isMissing(err) && name !== 'NoSuchBucket') return undefined;
      if (status === 501 || name === 'NotImplemented') {
        throw this.leaseUnsupported(err, { bucket: this.opts.bucket, key });
      }
      throw this.fail('writing (conditionally)', key, err);
    }
    if (!out.ETag)
      throw this.fail('writing (conditionally)', key, new Error('the store answered without an ETag, which the lease compares against'));
    return out.ETag;
  }

  /**
   * The lease write through LeasePut: its answer as the SDK would give it (an error with the store's
   * code and status, which conditionalPut maps the same way). Undefined — send it through the SDK, and
   * from now on every lease write — when the store refused the request itself (400, 403, a redirect):
   * the replayed request may be what it objects to, and a refused request wrote nothing, so sending it
   * again is safe. A 5xx or no answer is thrown as it is (the write's outcome is unknown).
   */
  private async leanPut(
    lean: LeasePut,
    body: Buffer,
    expected: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ ETag?: string } | undefined> {
    this.counts.add('PUT');
    const a = await lean.send(body, expected, signal);
    if (a.status >= 200 && a.status < 300) return { ETag: a.etag };
    const known = a.status === 412 || a.status === 409 || a.status === 404 || a.status === 501 || a.status >= 500;
    if (!known) {
      this.leasePut = undefined;
      this.leasePutRefused = true;
      return undefined;
    }
    const name = a.code ?? (a.status === 412 ? 'PreconditionFailed' : a.status === 404 ? 'NotFound' : 'UnknownError');
    throw Object.assign(new Error(a.message ?? `the store answered HTTP ${a.status}`), { name, $metadata: { httpStatusCode: a.status } });
  }
}
