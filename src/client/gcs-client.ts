/**
 * The `gcs` backend (Google Cloud Storage) with the official SDK, loaded only when used. Credentials are
 * Application Default Credentials, as Litestream v0.3.13 (no keys in the config); createdAt is the
 * object's `timeCreated`, the `Created` attribute Litestream uses.
 *
 * Uploads: a body that fits in one chunk is a single-request upload of a buffer (one request, and the
 * SDK can retry it); a bigger one is a resumable upload in 8 MiB chunks, each retried on its own, so a
 * blip in the middle of a 1 GB snapshot resends one chunk, not the snapshot. Memory stays bounded by
 * about two chunks either way.
 *
 * The lease (src/lease/) is one object, `<path>/lease/lease.json`, changed with single-request uploads
 * under generation preconditions (ifGenerationMatch), which a start-up probe checks the store enforces.
 */
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Bucket } from '@google-cloud/storage';
import { NotFoundError, ReplicateError } from '../errors.js';
import { describeCloudError } from './cloud-error.js';
import { fixedChunks } from '../internal/fixed-chunks.js';
import { isGenerationName } from '../layout.js';
import { ObjectStoreClient, type StoredObject } from './object-store.js';
import { guardBody } from './stall-guard.js';
import type { ObjectBody, OpOptions, ReplicaClient, StoredLease } from './replica-client.js';

export interface GcsReplicaClientOptions {
  bucket: string;
  path?: string;
  /**
   * API endpoint, for an emulator (`http://127.0.0.1:PORT`). The config layer fills it from
   * `STORAGE_EMULATOR_HOST`, the variable Litestream's Go client honours.
   */
  endpoint?: string;
  /** Project for the emulator; real buckets need none. */
  projectId?: string;
  /** One HTTP request may take this long before it is abandoned and retried (default 60 s). */
  requestTimeoutMs?: number;
  /** Objects per listing page (default: the store's maximum, 1000 or 5000); small values are for tests. */
  listPageSize?: number;
}

/** Resumable chunk size: a multiple of 256 KiB, as the API requires. */
const CHUNK_SIZE = 8 * 1024 * 1024;
const DELETE_CONCURRENCY = 16;

export class GcsReplicaClient extends ObjectStoreClient implements ReplicaClient {
  readonly type = 'gcs';
  protected readonly scheme = 'gs';
  private bucketHandle: Promise<Bucket> | undefined;
  private leaseBucketHandle: Promise<Bucket> | undefined;

  constructor(private readonly opts: GcsReplicaClientOptions) {
    super(opts, `gcs://${opts.bucket}`);
  }

  private bucket(): Promise<Bucket> {
    // Every write here is idempotent: an object at a position always holds the same bytes, so writing
    // it twice is harmless, and deleting a deleted object succeeds.
    this.bucketHandle ??= this.makeBucket(true);
    return this.bucketHandle;
  }

  /**
   * For the lease's conditional writes: a Storage of its own whose requests are sent once. With a
   * precondition the SDK would retry a save on a transient error, and a retry whose first try committed
   * (its reply lost) would be refused with 412 — our own write seen as someone else's. (A Storage of its
   * own, too, because the SDK switches retries off and on again in the Storage object's shared options.)
   */
  private leaseBucket(): Promise<Bucket> {
    this.leaseBucketHandle ??= this.makeBucket(false);
    return this.leaseBucketHandle;
  }

  private async makeBucket(retries: boolean): Promise<Bucket> {
    const sdk = await import('@google-cloud/storage');
    const o = this.opts;
    const storage = new sdk.Storage({
      ...(o.endpoint !== undefined ? { apiEndpoint: o.endpoint, projectId: o.projectId ?? 'stn-replicate' } : {}),
      ...(o.projectId !== undefined ? { projectId: o.projectId } : {}),
      timeout: o.requestTimeoutMs ?? 60_000,
      retryOptions: retries
        ? {
            autoRetry: true,
            maxRetries: 5,
            maxRetryDelay: 5,
            retryDelayMultiplier: 2,
            totalTimeout: 300,
            idempotencyStrategy: sdk.IdempotencyStrategy.RetryAlways,
          }
        : { autoRetry: false, maxRetries: 0, idempotencyStrategy: sdk.IdempotencyStrategy.RetryNever },
    });
    return storage.bucket(o.bucket);
  }

  private fail(doing: string, key: string, err: unknown): ReplicateError {
    return new ReplicateError('IO', `[gcs] ${doing} gs://${this.opts.bucket}/${key}: ${describeCloudError(err)}`, {
      cause: err,
      details: { bucket: this.opts.bucket, key },
    });
  }

  async generations(opts?: OpOptions): Promise<string[]> {
    const prefix = `${this.layout.generationsDir()}/`;
    const out = new Set<string>(); // the emulator repeats prefixes on every page
    for await (const page of this.pages(prefix, '/', opts)) {
      for (const p of page.prefixes) {
        const name = posix.basename(p);
        if (isGenerationName(name)) out.add(name);
      }
    }
    return [...out].sort();
  }

  /** Every page of a listing, to the end (a listing never stops at a partial result). */
  private async *pages(
    prefix: string,
    delimiter: string | undefined,
    opts?: OpOptions,
  ): AsyncGenerator<{ items: StoredObject[]; prefixes: string[] }> {
    const b = await this.bucket();
    let pageToken: string | undefined;
    do {
      if (opts?.signal?.aborted) throw new ReplicateError('ABORTED', `[gcs] listing gs://${this.opts.bucket}/${prefix}: aborted`);
      let files, next, raw;
      try {
        this.counts.add('LIST');
        [files, next, raw] = await b.getFiles({
          prefix,
          ...(delimiter ? { delimiter } : {}),
          autoPaginate: false,
          maxResults: this.opts.listPageSize ?? 1000,
          ...(pageToken ? { pageToken } : {}),
        });
      } catch (err) {
        throw this.fail('listing', prefix, err);
      }
      const items = files.map((f) => ({
        key: f.name,
        size: Number(f.metadata.size ?? 0),
        createdAt: new Date(String(f.metadata.timeCreated ?? f.metadata.updated)),
      }));
      yield { items, prefixes: (raw as { prefixes?: string[] } | undefined)?.prefixes ?? [] };
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
    } while (pageToken);
  }

  protected async listObjects(prefix: string, opts?: OpOptions): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    for await (const page of this.pages(prefix, undefined, opts)) out.push(...page.items);
    return out;
  }

  /** One PUT per upload, whether single-request or resumable (see the module's comment). */
  protected async putObject(key: string, body: ObjectBody, opts?: OpOptions): Promise<number> {
    const b = await this.bucket();
    const file = b.file(key);
    this.counts.add('PUT');
    try {
      const pieces = fixedChunks(body, CHUNK_SIZE);
      const first = await pieces.next();
      const head = first.done ? Buffer.alloc(0) : first.value;
      const second = first.done ? first : await pieces.next();
      if (second.done) {
        await file.save(head, {
          resumable: false,
          contentType: 'application/octet-stream',
          ...(opts?.signal ? { signal: opts.signal } : {}),
        } as Parameters<typeof file.save>[1]);
        return head.length;
      }
      let size = 0;
      const source = Readable.from(
        (async function* () {
          size += head.length;
          yield head;
          size += second.value.length;
          yield second.value;
          for await (const piece of pieces) {
            size += piece.length;
            yield piece;
          }
        })(),
      );
      await pipeline(source, file.createWriteStream({ resumable: true, chunkSize: CHUNK_SIZE, contentType: 'application/octet-stream' }), {
        signal: opts?.signal,
      });
      return size;
    } catch (err) {
      throw this.fail('writing', key, err);
    }
  }

  /**
   * Opens an object for reading. The SDK reports a missing object only as a stream error, so this waits
   * for the response (or that error) before returning, to raise NotFoundError from here. One GET per read.
   */
  protected async getObject(key: string, opts?: OpOptions): Promise<Readable> {
    const b = await this.bucket();
    this.counts.add('GET');
    const stream = b.file(key).createReadStream({ validation: false });
    const onAbort = () => stream.destroy(new ReplicateError('ABORTED', `[gcs] reading gs://${this.opts.bucket}/${key}: aborted`));
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
    stream.once('close', () => opts?.signal?.removeEventListener('abort', onAbort));
    // The SDK sends the request only once somebody reads: a 'readable' listener makes it start (and
    // buffers at most one chunk) without consuming anything the caller will read.
    const kick = () => undefined;
    stream.on('readable', kick);
    try {
      await new Promise<void>((resolve, reject) => {
        // A failed request is reported as a 'response' too, then as an 'error' that carries the code.
        stream.once('response', (res: { statusCode?: number; status?: number }) => {
          if ((res.statusCode ?? res.status ?? 200) < 400) resolve();
        });
        stream.once('error', reject);
      });
      stream.off('readable', kick);
    } catch (err) {
      stream.destroy();
      if ((err as { code?: number }).code === 404) {
        throw new NotFoundError(`[gcs] object not found: gs://${this.opts.bucket}/${key}`, {
          cause: err,
          details: { bucket: this.opts.bucket, key },
        });
      }
      throw this.fail('reading', key, err);
    }
    // The SDK's timeout covers the wait for the response, not a body that stops arriving.
    return guardBody(stream, this.opts.requestTimeoutMs ?? 60_000, opts?.signal, (err) => this.fail('reading', key, err));
  }

  /** The JSON API's batch endpoint is not in the Node SDK: deletes go a few at a time, 404 ignored. */
  protected async deleteKeys(keys: string[], opts?: OpOptions): Promise<void> {
    const b = await this.bucket();
    for (let i = 0; i < keys.length; i += DELETE_CONCURRENCY) {
      if (opts?.signal?.aborted) throw new ReplicateError('ABORTED', `[gcs] deleting in gs://${this.opts.bucket}: aborted`);
      await Promise.all(
        keys.slice(i, i + DELETE_CONCURRENCY).map(async (key) => {
          this.counts.add('DELETE');
          try {
            await b.file(key).delete({ ignoreNotFound: true });
          } catch (err) {
            throw this.fail('deleting', key, err);
          }
        }),
      );
    }
  }

  async deleteGeneration(generation: string, opts?: OpOptions): Promise<void> {
    const keys = (await this.listObjects(`${this.layout.generationDir(generation)}/`, opts)).map((o) => o.key);
    await this.deleteKeys(keys, opts);
  }

  /**
   * The lease object and its generation, from one response (the media download's x-goog-generation
   * header), so they always belong together. Generations are decimal strings beyond 2^53 on real GCS:
   * kept as strings.
   */
  async readLease(opts?: OpOptions): Promise<StoredLease | undefined> {
    const b = await this.bucket();
    const key = this.layout.leaseObjectKey();
    this.counts.add('GET');
    const chunks: Buffer[] = [];
    let generation: string | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        const stream = b.file(key).createReadStream({ validation: false });
        const onAbort = () => stream.destroy(new ReplicateError('ABORTED', `[gcs] reading gs://${this.opts.bucket}/${key}: aborted`));
        opts?.signal?.addEventListener('abort', onAbort, { once: true });
        stream
          .on('response', (res: { headers?: Record<string, string | string[] | undefined> }) => {
            const g = res.headers?.['x-goog-generation'];
            generation = Array.isArray(g) ? g[0] : g;
          })
          .on('data', (c: Buffer) => chunks.push(c))
          .once('end', resolve)
          .once('error', reject)
          .once('close', () => opts?.signal?.removeEventListener('abort', onAbort));
      });
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw this.fail('reading', key, err);
    }
    if (!generation)
      throw this.fail('reading', key, new Error('the store answered without x-goog-generation, which the lease compares against'));
    return { body: Buffer.concat(chunks), version: generation };
  }

  // Generations are timestamps in microseconds: 1 was never one.
  protected readonly leaseConditions = { bogusVersion: '1', create: 'ifGenerationMatch=0', replace: 'ifGenerationMatch=<generation>' };

  protected async removeProbe(key: string, signal?: AbortSignal): Promise<void> {
    await abandonOn(signal, (await this.bucket()).file(key).delete({ ignoreNotFound: true }));
  }

  /**
   * One single-request upload (never resumable: the condition would apply at its finalization) with
   * ifGenerationMatch: 0 (create only) or the expected generation (replace only that one), sent once.
   * `signal` abandons the wait (the SDK's save takes none); the outcome then counts as failed.
   */
  protected async conditionalPut(key: string, body: Buffer, expected: string | undefined, opts?: OpOptions): Promise<string | undefined> {
    const file = (await this.leaseBucket()).file(key);
    this.counts.add('PUT');
    try {
      await abandonOn(
        opts?.signal,
        file.save(body, { resumable: false, contentType: 'application/json', preconditionOpts: { ifGenerationMatch: expected ?? 0 } }),
      );
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      // conditionNotMet: someone else wrote first (or, for a generation, the object is gone).
      if (code === 412) return undefined;
      if (code === 501) {
        throw this.leaseUnsupported(err, { bucket: this.opts.bucket, key });
      }
      throw this.fail('writing (conditionally)', key, err);
    }
    const generation = (file.metadata as { generation?: string | number }).generation;
    if (generation === undefined || generation === '')
      throw this.fail(
        'writing (conditionally)',
        key,
        new Error('the store answered without a generation, which the lease compares against'),
      );
    return String(generation);
  }
}

/** Waits for `work`, or rejects when `signal` aborts first (the request itself runs on, unobserved). */
function abandonOn<T>(signal: AbortSignal | undefined, work: Promise<T>): Promise<T> {
  if (!signal) return work;
  work.catch(() => undefined); // abandoned: its own failure is nobody's concern any more
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new ReplicateError('ABORTED', 'request abandoned', { cause: signal.reason }));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
