/**
 * The `abs` backend (Azure Blob Storage) with the official SDK, loaded only when used. Shared Key auth
 * only, as Litestream v0.3.13; createdAt is the blob's creation time (as Litestream uses it).
 */
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import type { ContainerClient } from '@azure/storage-blob';
import { describeError, NotFoundError, ReplicateError } from '../errors.js';
import { ReplicaLayout, isGenerationName, parseSnapshotName, parseWalSegmentName } from '../layout.js';
import type { Pos } from '../pos.js';
import { countingStream, type ObjectBody, type OpOptions, type ReplicaClient, type SnapshotInfo, type WalSegmentInfo } from './replica-client.js';

export interface AbsReplicaClientOptions {
  accountName: string;
  accountKey: string;
  /** Container. */
  bucket: string;
  path?: string;
  /** Default `https://<account>.blob.core.windows.net`; for Azurite include the account segment. */
  endpoint?: string;
  /** One try of a request may take this long before it is abandoned and retried (default 60 s). */
  tryTimeoutMs?: number;
}

const UPLOAD_BUFFER = 4 * 1024 * 1024;

export class AbsReplicaClient implements ReplicaClient {
  readonly type = 'abs';
  readonly location: string;
  private readonly layout: ReplicaLayout;
  private container: Promise<ContainerClient> | undefined;

  constructor(private readonly opts: AbsReplicaClientOptions) {
    const root = opts.path ?? '';
    this.layout = new ReplicaLayout(root, posix.join);
    this.location = `abs://${opts.accountName}@${opts.bucket}/${root === '.' ? '' : root}`;
  }

  private client(): Promise<ContainerClient> {
    this.container ??= (async () => {
      const sdk = await import('@azure/storage-blob');
      const o = this.opts;
      const credential = new sdk.StorageSharedKeyCredential(o.accountName, o.accountKey);
      const service = new sdk.BlobServiceClient(o.endpoint ?? `https://${o.accountName}.blob.core.windows.net`, credential, {
        // Retries with backoff for 5xx, throttling and resets; a stalled try is abandoned and retried.
        retryOptions: { maxTries: 5, tryTimeoutInMs: o.tryTimeoutMs ?? 60_000, retryDelayInMs: 200, maxRetryDelayInMs: 5_000 },
      });
      return service.getContainerClient(o.bucket);
    })();
    return this.container;
  }

  private fail(doing: string, key: string, err: unknown): ReplicateError {
    return new ReplicateError('IO', `[abs] ${doing} ${this.opts.bucket}/${key}: ${describeError(err)}`, {
      cause: err,
      details: { container: this.opts.bucket, key },
    });
  }

  async generations(opts?: OpOptions): Promise<string[]> {
    const c = await this.client();
    const prefix = `${this.layout.generationsDir()}/`;
    const out = new Set<string>();
    try {
      for await (const item of c.listBlobsByHierarchy('/', { prefix, abortSignal: opts?.signal })) {
        if (item.kind === 'prefix') {
          const name = posix.basename(item.name);
          if (isGenerationName(name)) out.add(name);
        }
      }
    } catch (err) {
      throw this.fail('listing', prefix, err);
    }
    return [...out].sort();
  }

  private async listFlat(prefix: string, opts?: OpOptions) {
    const c = await this.client();
    const items: { name: string; size: number; createdAt: Date }[] = [];
    try {
      for await (const b of c.listBlobsFlat({ prefix, abortSignal: opts?.signal })) {
        items.push({ name: posix.basename(b.name), size: b.properties.contentLength ?? 0, createdAt: b.properties.createdOn ?? b.properties.lastModified });
      }
    } catch (err) {
      throw this.fail('listing', prefix, err);
    }
    return items;
  }

  async *snapshots(generation: string, opts?: OpOptions): AsyncIterable<SnapshotInfo> {
    const out: SnapshotInfo[] = [];
    for (const b of await this.listFlat(`${this.layout.snapshotsDir(generation)}/`, opts)) {
      const p = parseSnapshotName(b.name);
      if (p) out.push({ generation, index: p.index, size: b.size, createdAt: b.createdAt });
    }
    yield* out.sort((a, b) => a.index - b.index);
  }

  async *walSegments(generation: string, opts?: OpOptions): AsyncIterable<WalSegmentInfo> {
    const out: WalSegmentInfo[] = [];
    for (const b of await this.listFlat(`${this.layout.walDir(generation)}/`, opts)) {
      const p = parseWalSegmentName(b.name);
      if (p) out.push({ generation, index: p.index, offset: p.offset, size: b.size, createdAt: b.createdAt });
    }
    yield* out.sort((a, b) => a.index - b.index || a.offset - b.offset);
  }

  private async put(key: string, body: ObjectBody, opts?: OpOptions): Promise<number> {
    const c = await this.client();
    const { stream: counted, bytes } = countingStream(body);
    try {
      await c.getBlockBlobClient(key).uploadStream(counted, UPLOAD_BUFFER, 2, {
        blobHTTPHeaders: { blobContentType: 'application/octet-stream' },
        abortSignal: opts?.signal,
      });
    } catch (err) {
      throw this.fail('writing', key, err);
    }
    return bytes();
  }

  async writeSnapshot(generation: string, index: number, body: ObjectBody, opts?: OpOptions): Promise<SnapshotInfo> {
    const size = await this.put(this.layout.snapshotPath(generation, index), body, opts);
    return { generation, index, size, createdAt: new Date() };
  }

  async writeWalSegment(pos: Pos, body: ObjectBody, opts?: OpOptions): Promise<WalSegmentInfo> {
    const size = await this.put(this.layout.walSegmentPath(pos.generation, pos.index, pos.offset), body, opts);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size, createdAt: new Date() };
  }

  private async get(key: string, opts?: OpOptions): Promise<Readable> {
    const c = await this.client();
    try {
      const res = await c.getBlobClient(key).download(0, undefined, { abortSignal: opts?.signal });
      return res.readableStreamBody as Readable;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) {
        throw new NotFoundError(`[abs] blob not found: ${this.opts.bucket}/${key}`, { cause: err, details: { container: this.opts.bucket, key } });
      }
      throw this.fail('reading', key, err);
    }
  }

  snapshotReader(generation: string, index: number, opts?: OpOptions): Promise<Readable> {
    return this.get(this.layout.snapshotPath(generation, index), opts);
  }

  walSegmentReader(pos: Pos, opts?: OpOptions): Promise<Readable> {
    return this.get(this.layout.walSegmentPath(pos.generation, pos.index, pos.offset), opts);
  }

  private async deleteKeys(keys: string[], opts?: OpOptions): Promise<void> {
    const c = await this.client();
    for (const key of keys) {
      try {
        await c.getBlobClient(key).deleteIfExists({ abortSignal: opts?.signal });
      } catch (err) {
        throw this.fail('deleting', key, err);
      }
    }
  }

  async deleteGeneration(generation: string, opts?: OpOptions): Promise<void> {
    const prefix = `${this.layout.generationDir(generation)}/`;
    const c = await this.client();
    const keys: string[] = [];
    try {
      for await (const b of c.listBlobsFlat({ prefix, abortSignal: opts?.signal })) keys.push(b.name);
    } catch (err) {
      throw this.fail('listing', prefix, err);
    }
    await this.deleteKeys(keys, opts);
  }

  async deleteSnapshot(generation: string, index: number, opts?: OpOptions): Promise<void> {
    await this.deleteKeys([this.layout.snapshotPath(generation, index)], opts);
  }

  async deleteWalSegments(positions: readonly Pos[], opts?: OpOptions): Promise<void> {
    await this.deleteKeys(
      positions.map((p) => this.layout.walSegmentPath(p.generation, p.index, p.offset)),
      opts,
    );
  }

  snapshotLocation(generation: string, index: number): string {
    return `abs://${this.opts.bucket}/${this.layout.snapshotPath(generation, index)}`;
  }

  walSegmentLocation(pos: Pos): string {
    return `abs://${this.opts.bucket}/${this.layout.walSegmentPath(pos.generation, pos.index, pos.offset)}`;
  }
}
