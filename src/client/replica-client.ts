/**
 * The storage contract every replica backend implements. A client stores opaque bytes (already
 * LZ4-framed by the core) at Litestream positions and lists them back; it knows nothing of compression,
 * retention, timing or retries.
 *
 * Rules every backend follows (and the shared contract suite in test/contract checks):
 * - listings are complete (paginated to the end) and ordered: generations by name, snapshots by index,
 *   WAL segments by (index, offset); names that do not parse are skipped;
 * - a missing object raises NotFoundError; a missing generation lists as empty;
 * - deletes are idempotent (deleting what is not there succeeds);
 * - `createdAt` is the object timestamp Litestream uses for that backend (file: mtime).
 */
import { Readable } from 'node:stream';
import type { ReadBuffers } from '../internal/read-buffer-pool.js';
import type { Pos } from '../pos.js';

export interface OpOptions {
  signal?: AbortSignal;
  /**
   * For readers: the consumer is done with each chunk before it has pulled `RECYCLE_AFTER_CHUNKS` more,
   * so a backend that allocates its read buffers itself may reuse them (fewer allocations left for the
   * garbage collector: a restore's snapshot is hundreds of MB). Backends may ignore it.
   */
  recycleReadBuffers?: boolean;
  /**
   * For readers: take read buffers from here instead of allocating them (a restore's WAL segments: the
   * caller reuses them once it is done with the object's bytes). Backends may ignore it.
   */
  readBuffers?: ReadBuffers;
}

/** See OpOptions.recycleReadBuffers. */
export const RECYCLE_AFTER_CHUNKS = 8;

export interface SnapshotInfo {
  readonly generation: string;
  readonly index: number;
  /** Stored (compressed) size in bytes. */
  readonly size: number;
  readonly createdAt: Date;
}

export interface WalSegmentInfo {
  readonly generation: string;
  readonly index: number;
  readonly offset: number;
  /** Stored (compressed) size in bytes. */
  readonly size: number;
  readonly createdAt: Date;
}

/** The lease object as stored, with the version its conditional writes compare against. */
export interface StoredLease {
  readonly body: Buffer;
  /** Opaque: a file record's sequence, an S3/ABS ETag, a GCS generation. */
  readonly version: string;
}

/** A byte stream to upload: a Readable or any async iterable of chunks. */
export type ObjectBody = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** Request kinds, counted per client (Litestream's `litestream_replica_operation_total` operations). */
export const REPLICA_OPERATIONS = ['LIST', 'PUT', 'GET', 'DELETE'] as const;
export type ReplicaOperation = (typeof REPLICA_OPERATIONS)[number];
export type OperationCounts = Record<ReplicaOperation, number>;

/** Counts requests by kind; every backend keeps one so an idle replica can be shown to make none. */
export class OperationCounter {
  private readonly counts: OperationCounts = { LIST: 0, PUT: 0, GET: 0, DELETE: 0 };
  add(op: ReplicaOperation, n = 1): void {
    this.counts[op] += n;
  }
  read(): Readonly<OperationCounts> {
    return { ...this.counts };
  }
}

/**
 * How a built-in client is carried into a replication worker thread (src/embedded/): its constructor
 * options as plain data (rebuilt there by client-transfer.ts) and its request counter (which counts the
 * worker's requests too, so `requestCounts()` of the object the caller holds stays true). Symbol-keyed so
 * it is no part of the interface, and never printed: the options may hold credentials, which go to the
 * worker in memory and nowhere else.
 */
export const CLIENT_TRANSFER = Symbol('stn-replicate.clientTransfer');

export interface ClientTransfer {
  options: object;
  counter: OperationCounter;
}

export interface ReplicaClient {
  /** Backend type as it appears in config: "file", "s3", "gcs", "abs". */
  readonly type: string;
  /** A human description of where the replica lives (never with secrets), for messages. */
  readonly location: string;

  generations(opts?: OpOptions): Promise<string[]>;
  snapshots(generation: string, opts?: OpOptions): AsyncIterable<SnapshotInfo>;
  walSegments(generation: string, opts?: OpOptions): AsyncIterable<WalSegmentInfo>;

  /**
   * True when writeSnapshot and writeWalSegment are done with each chunk of the body (have written or
   * copied it) before they pull the next one, and with the last before the body ends: the body may then
   * hand out the same buffer again (the LZ4 encoder's reuseOutput). Unset: the client may queue chunks.
   */
  readonly consumesBodyInOrder?: boolean;
  writeSnapshot(generation: string, index: number, body: ObjectBody, opts?: OpOptions): Promise<SnapshotInfo>;
  writeWalSegment(pos: Pos, body: ObjectBody, opts?: OpOptions): Promise<WalSegmentInfo>;

  /** Opens a stored snapshot for reading; NotFoundError if it does not exist. */
  snapshotReader(generation: string, index: number, opts?: OpOptions): Promise<Readable>;
  /** Opens a stored WAL segment for reading; NotFoundError if it does not exist. */
  walSegmentReader(pos: Pos, opts?: OpOptions): Promise<Readable>;

  deleteGeneration(generation: string, opts?: OpOptions): Promise<void>;
  deleteSnapshot(generation: string, index: number, opts?: OpOptions): Promise<void>;
  deleteWalSegments(positions: readonly Pos[], opts?: OpOptions): Promise<void>;

  /**
   * Lease primitives (see src/lease/replica-lease.ts, which owns the record's format and the rules). A
   * backend implements both with its store's own atomic primitive, or neither: then replication reports
   * that the replica has no atomic lease.
   *
   * `readLease`: the current lease object, or undefined when there is none.
   */
  readLease?(opts?: OpOptions): Promise<StoredLease | undefined>;
  /**
   * `writeLease`: stores `body` as the lease object only if the stored version is still `expected`
   * (undefined: only if there is no lease object at all) — a compare-and-swap, of which exactly one of
   * any number of concurrent callers with the same `expected` wins. Returns the new version, or
   * undefined when the condition failed (someone else wrote first; nothing was written).
   */
  writeLease?(body: Buffer, expected: string | undefined, opts?: OpOptions): Promise<string | undefined>;
  /**
   * For a backend whose store may not enforce its conditions (object stores, S3-compatible ones above
   * all): checks on a throwaway object that it does (src/client/lease-probe.ts), and throws
   * LEASE_UNSUPPORTED if not. ReplicaLease runs it once before its first acquisition.
   *
   * Implementations of writeLease must never report a write as done ("won") unless the store confirmed
   * it: a timeout, a reset or a 5xx throws. They send each conditional write once (no SDK retries: a
   * retried request whose first try committed would see its own write and report "condition failed").
   */
  probeLease?(opts?: OpOptions): Promise<void>;

  /** Requests sent so far, by kind (for a backend's own retries and multipart parts, see its module). */
  requestCounts(): Readonly<OperationCounts>;

  /** A key for messages: where one snapshot lives (no I/O). */
  snapshotLocation(generation: string, index: number): string;
  /** A key for messages: where one WAL segment lives (no I/O). */
  walSegmentLocation(pos: Pos): string;
}

/** A client with both lease primitives. */
export type LeaseCapableClient = ReplicaClient & Required<Pick<ReplicaClient, 'readLease' | 'writeLease'>>;

/** Whether the client can hold a lease atomically (it implements both primitives). */
export function supportsLease(client: ReplicaClient): client is LeaseCapableClient {
  return typeof client.readLease === 'function' && typeof client.writeLease === 'function';
}

/** Collects an async iterable into an array (listings are small: names and sizes, not bytes). */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** An upload body as a Readable of Buffers that counts what passed through (for the returned size). */
export function countingStream(body: ObjectBody): { stream: Readable; bytes: () => number } {
  let n = 0;
  const stream = Readable.from(
    (async function* () {
      for await (const chunk of body) {
        n += chunk.length;
        yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      }
    })(),
  );
  return { stream, bytes: () => n };
}
