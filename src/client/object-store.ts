/**
 * What the s3, gcs and abs backends share: addressing snapshots and segments by key, writing and
 * reading them, turning a store's object listing into Litestream positions, the request counter, the
 * replica's location, and the lease's write and start-up probe. A backend supplies only the store's own
 * calls (upload a body to a key, open a key for reading, list the objects under a prefix, delete keys,
 * one conditional write, delete a probe object), its URL scheme and its conditions' names for messages.
 */
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { ReplicateError } from '../errors.js';
import { describeCloudError } from './cloud-error.js';
import { parseSnapshotName, parseWalSegmentName, ReplicaLayout } from '../layout.js';
import type { Pos } from '../pos.js';
import { probeConditionalWrites } from './lease-probe.js';
import {
  CLIENT_TRANSFER,
  OperationCounter,
  type ClientTransfer,
  type ObjectBody,
  type OperationCounts,
  type OpOptions,
  type SnapshotInfo,
  type WalSegmentInfo,
} from './replica-client.js';

export interface StoredObject {
  readonly key: string;
  /** Stored (compressed) size in bytes. */
  readonly size: number;
  /** The store's timestamp Litestream uses for this backend. */
  readonly createdAt: Date;
}

/** The options every object store's client takes: where its objects live. */
export interface ObjectStoreOptions {
  /** Bucket (container, for abs). */
  bucket: string;
  /** Key prefix ("" or "." for the bucket root). */
  path?: string;
}

export abstract class ObjectStoreClient {
  readonly location: string;
  protected readonly layout: ReplicaLayout;
  protected readonly bucketName: string;
  /** Requests by kind, as the backend sends them (see its module for what counts as one). */
  protected readonly counts = new OperationCounter();
  /** `s3`, `gs` or `abs`: the scheme of the `scheme://bucket/key` form in messages. */
  protected abstract readonly scheme: string;

  /**
   * `options` are the client's constructor options (carried to a replication worker thread as they
   * are, see CLIENT_TRANSFER); `where` the start of `location`, the replica's description in messages
   * (`s3://bucket`, `abs://account@container`).
   */
  protected constructor(
    private readonly options: ObjectStoreOptions,
    where: string,
  ) {
    const root = options.path ?? '';
    this.layout = new ReplicaLayout(root);
    this.bucketName = options.bucket;
    this.location = `${where}/${root === '.' ? '' : root}`;
  }

  /** Uploads `body` to `key`, streaming; resolves to the bytes written. */
  protected abstract putObject(key: string, body: ObjectBody, opts?: OpOptions): Promise<number>;
  /** Opens `key` for reading; NotFoundError if it is not there. */
  protected abstract getObject(key: string, opts?: OpOptions): Promise<Readable>;

  /** The objects under a snapshot or WAL directory (`prefix` ends in `/`), paged to the end. */
  protected abstract listObjects(prefix: string, opts?: OpOptions): Promise<StoredObject[]>;
  /** Deletes keys; a key that is not there is not an error. */
  protected abstract deleteKeys(keys: string[], opts?: OpOptions): Promise<void>;
  /**
   * One conditional write of `key`, sent once: create only (`expected` undefined) or replace only that
   * version. The new version, or undefined when the condition failed (nothing written).
   */
  protected abstract conditionalPut(key: string, body: Buffer, expected: string | undefined, opts?: OpOptions): Promise<string | undefined>;
  /** Deletes a lease probe object, unconditionally. */
  protected abstract removeProbe(key: string, signal?: AbortSignal): Promise<void>;
  /** For the probe (lease-probe.ts): a version the store never gives out, and its conditions' names. */
  protected abstract readonly leaseConditions: { bogusVersion: string; create: string; replace: string };
  abstract readonly type: string;

  /** For a replication worker thread (see CLIENT_TRANSFER): a copy of the options, and the counter. */
  [CLIENT_TRANSFER](): ClientTransfer {
    return { options: { ...this.options }, counter: this.counts };
  }

  requestCounts(): Readonly<OperationCounts> {
    return this.counts.read();
  }

  async writeSnapshot(generation: string, index: number, body: ObjectBody, opts?: OpOptions): Promise<SnapshotInfo> {
    const size = await this.putObject(this.layout.snapshotPath(generation, index), body, opts);
    return { generation, index, size, createdAt: new Date() };
  }

  async writeWalSegment(pos: Pos, body: ObjectBody, opts?: OpOptions): Promise<WalSegmentInfo> {
    const size = await this.putObject(this.layout.walSegmentPath(pos.generation, pos.index, pos.offset), body, opts);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size, createdAt: new Date() };
  }

  snapshotReader(generation: string, index: number, opts?: OpOptions): Promise<Readable> {
    return this.getObject(this.layout.snapshotPath(generation, index), opts);
  }

  walSegmentReader(pos: Pos, opts?: OpOptions): Promise<Readable> {
    return this.getObject(this.layout.walSegmentPath(pos.generation, pos.index, pos.offset), opts);
  }

  writeLease(body: Buffer, expected: string | undefined, opts?: OpOptions): Promise<string | undefined> {
    return this.conditionalPut(this.layout.leaseObjectKey(), body, expected, opts);
  }

  /** What a conditional write answered "not implemented" (HTTP 501) fails with: no lease on this store. */
  protected leaseUnsupported(err: unknown, details: Record<string, unknown>): ReplicateError {
    return new ReplicateError(
      'LEASE_UNSUPPORTED',
      `[${this.type}] the store at ${this.location} does not implement conditional writes (${describeCloudError(err)}); set \`lease: false\` on this replica to replicate it unleased`,
      {
        cause: err,
        details,
      },
    );
  }

  probeLease(opts?: OpOptions): Promise<void> {
    const c = this.leaseConditions;
    return probeConditionalWrites(
      {
        type: this.type,
        location: this.location,
        keyFor: (id) => this.layout.leaseProbeKey(id),
        bogusVersion: c.bogusVersion,
        createCondition: c.create,
        replaceCondition: c.replace,
        put: (key, body, expected, signal) => this.conditionalPut(key, body, expected, { signal }),
        remove: (key, signal) => this.removeProbe(key, signal),
      },
      opts?.signal,
    );
  }

  async *snapshots(generation: string, opts?: OpOptions): AsyncIterable<SnapshotInfo> {
    const out: SnapshotInfo[] = [];
    for (const o of await this.listObjects(`${this.layout.snapshotsDir(generation)}/`, opts)) {
      const p = parseSnapshotName(posix.basename(o.key));
      if (p) out.push({ generation, index: p.index, size: o.size, createdAt: o.createdAt });
    }
    yield* out.sort((a, b) => a.index - b.index);
  }

  async *walSegments(generation: string, opts?: OpOptions): AsyncIterable<WalSegmentInfo> {
    const out: WalSegmentInfo[] = [];
    for (const o of await this.listObjects(`${this.layout.walDir(generation)}/`, opts)) {
      const p = parseWalSegmentName(posix.basename(o.key));
      if (p) out.push({ generation, index: p.index, offset: p.offset, size: o.size, createdAt: o.createdAt });
    }
    yield* out.sort((a, b) => a.index - b.index || a.offset - b.offset);
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
    return `${this.scheme}://${this.bucketName}/${this.layout.snapshotPath(generation, index)}`;
  }

  walSegmentLocation(pos: Pos): string {
    return `${this.scheme}://${this.bucketName}/${this.layout.walSegmentPath(pos.generation, pos.index, pos.offset)}`;
  }
}
