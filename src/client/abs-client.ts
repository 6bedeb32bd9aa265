/**
 * The `abs` backend (Azure Blob Storage) with the official SDK, loaded only when used. Shared Key auth
 * only, as Litestream v0.3.13; createdAt is the blob's creation time (as Litestream uses it).
 *
 * The SDK retries 5xx, throttling and resets itself, but has no client-side timeout for a connection
 * that accepts a request and never answers, so every request runs under a StallGuard: no progress for
 * `tryTimeoutMs` abandons it (and reads, listings and deletes are tried again).
 *
 * The lease (src/lease/) is one blob, `<path>/lease/lease.json`, changed with conditional Put Blobs
 * (If-None-Match / If-Match on its ETag), which a start-up probe checks the store enforces.
 */
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import type { ContainerClient } from '@azure/storage-blob';
import { NotFoundError, ReplicateError } from '../errors.js';
import { describeCloudError } from './cloud-error.js';
import { isGenerationName } from '../layout.js';
import { ObjectStoreClient, type StoredObject } from './object-store.js';
import { fixedChunks } from '../internal/fixed-chunks.js';
import { guardBody, retryStalled, StallGuard, StalledError } from './stall-guard.js';
import type { ObjectBody, OpOptions, ReplicaClient, StoredLease } from './replica-client.js';

export interface AbsReplicaClientOptions {
  accountName: string;
  accountKey: string;
  /** Container. */
  bucket: string;
  path?: string;
  /** Default `https://<account>.blob.core.windows.net`; for Azurite include the account segment. */
  endpoint?: string;
  /** A request with no progress for this long is abandoned (and retried, except uploads); default 60 s. */
  tryTimeoutMs?: number;
  /** Objects per listing page (default: the store's maximum, 1000 or 5000); small values are for tests. */
  listPageSize?: number;
}

const BLOCK_SIZE = 4 * 1024 * 1024;
const BLOCKS_IN_FLIGHT = 2;
const STALL_TRIES = 3;

export class AbsReplicaClient extends ObjectStoreClient implements ReplicaClient {
  readonly type = 'abs';
  protected readonly scheme = 'abs';
  private container: Promise<ContainerClient> | undefined;
  private leaseContainer: Promise<ContainerClient> | undefined;
  private readonly idleMs: number;

  constructor(private readonly opts: AbsReplicaClientOptions) {
    super(opts, `abs://${opts.accountName}@${opts.bucket}`);
    this.idleMs = opts.tryTimeoutMs ?? 60_000;
  }

  private client(): Promise<ContainerClient> {
    // Retries with backoff for 5xx, throttling and resets; a stalled try is abandoned and retried.
    this.container ??= this.makeContainer(5);
    return this.container;
  }

  /**
   * For the lease's conditional writes: requests sent once. A retried conditional upload whose first
   * try committed (its reply lost) would be refused (412/409) — our own write seen as someone else's.
   */
  private leaseClient(): Promise<ContainerClient> {
    this.leaseContainer ??= this.makeContainer(1);
    return this.leaseContainer;
  }

  private async makeContainer(maxTries: number): Promise<ContainerClient> {
    const sdk = await import('@azure/storage-blob');
    const o = this.opts;
    const credential = new sdk.StorageSharedKeyCredential(o.accountName, o.accountKey);
    const service = new sdk.BlobServiceClient(o.endpoint ?? `https://${o.accountName}.blob.core.windows.net`, credential, {
      retryOptions: { maxTries, retryDelayInMs: 200, maxRetryDelayInMs: 5_000 },
    });
    return service.getContainerClient(o.bucket);
  }

  private fail(doing: string, key: string, err: unknown): ReplicateError {
    const why = err instanceof StalledError ? err.message : describeCloudError(err);
    return new ReplicateError('IO', `[abs] ${doing} ${this.opts.bucket}/${key}: ${why}`, {
      cause: err,
      details: { container: this.opts.bucket, key },
    });
  }

  async generations(opts?: OpOptions): Promise<string[]> {
    const c = await this.client();
    const prefix = `${this.layout.generationsDir()}/`;
    try {
      return await retryStalled(this.idleMs, STALL_TRIES, opts?.signal, async (guard) => {
        const out = new Set<string>();
        for await (const page of c
          .listBlobsByHierarchy('/', { prefix, abortSignal: guard.signal })
          .byPage({ maxPageSize: this.opts.listPageSize })) {
          this.counts.add('LIST');
          guard.touch();
          for (const p of page.segment.blobPrefixes ?? []) {
            const name = posix.basename(p.name);
            if (isGenerationName(name)) out.add(name);
          }
        }
        return [...out].sort();
      });
    } catch (err) {
      throw this.fail('listing', prefix, err);
    }
  }

  protected async listObjects(prefix: string, opts?: OpOptions): Promise<StoredObject[]> {
    const c = await this.client();
    try {
      return await retryStalled(this.idleMs, STALL_TRIES, opts?.signal, async (guard) => {
        const items: StoredObject[] = [];
        for await (const page of c.listBlobsFlat({ prefix, abortSignal: guard.signal }).byPage({ maxPageSize: this.opts.listPageSize })) {
          this.counts.add('LIST');
          guard.touch();
          for (const b of page.segment.blobItems) {
            items.push({
              key: b.name,
              size: b.properties.contentLength ?? 0,
              createdAt: b.properties.createdOn ?? b.properties.lastModified,
            });
          }
        }
        return items;
      });
    } catch (err) {
      throw this.fail('listing', prefix, err);
    }
  }

  /**
   * Uploads a body of unknown length with bounded memory: a body that fits in one block is one Put Blob;
   * a bigger one is staged as 4 MiB blocks (two in flight) and committed. Every request carries a
   * stall guard, and a block that stalled is sent again (blocks are buffers, so that is safe); the
   * body is never read twice. Every request (Put Blob, each Put Block, Put Block List) counts as a PUT.
   */
  protected async putObject(key: string, body: ObjectBody, opts?: OpOptions): Promise<number> {
    const c = await this.client();
    const blob = c.getBlockBlobClient(key);
    const headers = { blobHTTPHeaders: { blobContentType: 'application/octet-stream' } };
    const send = <T>(op: (signal: AbortSignal) => Promise<T>) =>
      retryStalled(this.idleMs, STALL_TRIES, opts?.signal, (guard) => {
        this.counts.add('PUT');
        return op(guard.signal);
      });
    let size = 0;
    try {
      const pieces = fixedChunks(body, BLOCK_SIZE);
      const first = await pieces.next();
      const head = first.done ? Buffer.alloc(0) : first.value;
      size += head.length;
      const second = await pieces.next();
      if (second.done) {
        await send((abortSignal) => blob.upload(head, head.length, { ...headers, abortSignal }));
        return size;
      }
      const ids: string[] = [];
      const inFlight: Promise<unknown>[] = [];
      const stage = async (piece: Buffer) => {
        const id = Buffer.from(`stn-block-${String(ids.length).padStart(8, '0')}`).toString('base64');
        ids.push(id);
        const p = send((abortSignal) => blob.stageBlock(id, piece, piece.length, { abortSignal }));
        p.catch(() => undefined); // awaited below; this only keeps a failure from going unhandled first
        inFlight.push(p);
        if (inFlight.length >= BLOCKS_IN_FLIGHT) await inFlight.shift();
      };
      await stage(head);
      size += second.value.length;
      await stage(second.value);
      for await (const piece of pieces) {
        size += piece.length;
        await stage(piece);
      }
      await Promise.all(inFlight);
      await send((abortSignal) => blob.commitBlockList(ids, { ...headers, abortSignal }));
      return size;
    } catch (err) {
      throw this.fail('writing', key, err);
    }
  }

  protected async getObject(key: string, opts?: OpOptions): Promise<Readable> {
    const c = await this.client();
    try {
      return await retryStalled(this.idleMs, STALL_TRIES, opts?.signal, async (first) => {
        this.counts.add('GET');
        const res = await c.getBlobClient(key).download(0, undefined, { abortSignal: first.signal });
        first.done();
        return guardBody(res.readableStreamBody as Readable, this.idleMs, opts?.signal, (err) => this.fail('reading', key, err));
      });
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) {
        throw new NotFoundError(`[abs] blob not found: ${this.opts.bucket}/${key}`, {
          cause: err,
          details: { container: this.opts.bucket, key },
        });
      }
      throw this.fail('reading', key, err);
    }
  }

  protected async deleteKeys(keys: string[], opts?: OpOptions): Promise<void> {
    const c = await this.client();
    // One idempotent request per blob, a few at a time (the blob batch API is not used yet).
    const CONCURRENCY = 8;
    for (let i = 0; i < keys.length; i += CONCURRENCY) {
      await Promise.all(
        keys.slice(i, i + CONCURRENCY).map(async (key) => {
          try {
            await retryStalled(this.idleMs, STALL_TRIES, opts?.signal, (guard) => {
              this.counts.add('DELETE');
              return c.getBlobClient(key).deleteIfExists({ abortSignal: guard.signal });
            });
          } catch (err) {
            throw this.fail('deleting', key, err);
          }
        }),
      );
    }
  }

  async deleteGeneration(generation: string, opts?: OpOptions): Promise<void> {
    const prefix = `${this.layout.generationDir(generation)}/`;
    const keys = (await this.listObjects(prefix, opts)).map((b) => b.key);
    await this.deleteKeys(keys, opts);
  }

  /** The lease blob and its ETag, from one download (so they always belong together). */
  async readLease(opts?: OpOptions): Promise<StoredLease | undefined> {
    const c = await this.client();
    const key = this.layout.leaseObjectKey();
    let read: { body: Buffer; etag: string | undefined };
    try {
      read = await retryStalled(this.idleMs, STALL_TRIES, opts?.signal, async (guard) => {
        this.counts.add('GET');
        const res = await c.getBlobClient(key).download(0, undefined, { abortSignal: guard.signal });
        const chunks: Buffer[] = [];
        for await (const chunk of res.readableStreamBody as Readable) {
          guard.touch();
          chunks.push(chunk as Buffer);
        }
        return { body: Buffer.concat(chunks), etag: res.etag };
      });
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw this.fail('reading', key, err);
    }
    if (!read.etag) throw this.fail('reading', key, new Error('the store answered without an ETag, which the lease compares against'));
    return { body: read.body, version: read.etag };
  }

  protected readonly leaseConditions = { bogusVersion: '"0x0000000000000000"', create: 'If-None-Match: *', replace: 'If-Match' };

  protected async removeProbe(key: string, signal?: AbortSignal): Promise<void> {
    const c = await this.client();
    await retryStalled(this.idleMs, STALL_TRIES, signal, (guard) => {
      this.counts.add('DELETE');
      return c.getBlobClient(key).deleteIfExists({ abortSignal: guard.signal });
    });
  }

  /**
   * One Put Blob (never staged blocks) with If-None-Match: * (create only) or If-Match: <ETag>
   * (replace only that version), sent once, under a stall guard (a stalled try is not tried again).
   */
  protected async conditionalPut(key: string, body: Buffer, expected: string | undefined, opts?: OpOptions): Promise<string | undefined> {
    const blob = (await this.leaseClient()).getBlockBlobClient(key);
    const guard = new StallGuard(this.idleMs, opts?.signal);
    this.counts.add('PUT');
    let etag: string | undefined;
    try {
      const res = await blob.upload(body, body.length, {
        conditions: expected === undefined ? { ifNoneMatch: '*' } : { ifMatch: expected },
        blobHTTPHeaders: { blobContentType: 'application/json' },
        abortSignal: guard.signal,
      });
      etag = res.etag;
    } catch (err) {
      const status = (err as { statusCode?: number }).statusCode;
      // 412 ConditionNotMet (a changed or missing blob), 409 BlobAlreadyExists (create only): nothing written.
      if (status === 412 || status === 409) return undefined;
      if (status === 501) {
        throw this.leaseUnsupported(err, { container: this.opts.bucket, key });
      }
      throw this.fail('writing (conditionally)', key, guard.stalled ? new StalledError(this.idleMs, 1, err) : err);
    } finally {
      guard.done();
    }
    if (!etag)
      throw this.fail('writing (conditionally)', key, new Error('the store answered without an ETag, which the lease compares against'));
    return etag;
  }
}
