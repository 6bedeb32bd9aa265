/**
 * What an S3 request is, seen from the server: which bucket and key, and which kind of operation.
 * Both tools are counted by the same server-side rule, so neither client's own bookkeeping (ours has
 * request counters, Litestream has Prometheus metrics) decides the comparison.
 *
 * Path-style only (`/<bucket>/<key>?query`): the benchmarks configure every client with
 * force-path-style against 127.0.0.1, where fauxqs does no virtual-host rewriting.
 */
import { performance } from 'node:perf_hooks';

export const KINDS = ['LIST', 'GET', 'PUT', 'DELETE', 'HEAD', 'MULTIPART', 'LEASE', 'OTHER'] as const;
export type RequestKind = (typeof KINDS)[number];
export type KindCounts = Record<RequestKind, number>;

export interface S3Request {
  /** performance.now() when the request arrived. */
  t: number;
  method: string;
  bucket: string;
  key: string;
  kind: RequestKind;
  /** The S3 operation, for the per-request listing: PutObject, UploadPart, ListObjects… */
  op: string;
  /** For listings, the prefix asked for. */
  prefix?: string;
}

export function zeroCounts(): KindCounts {
  return Object.fromEntries(KINDS.map((k) => [k, 0])) as KindCounts;
}

export function totalOf(c: KindCounts): number {
  return KINDS.reduce((n, k) => n + c[k], 0);
}

/** The requests that replicate data: everything but the lease's (which Litestream has no counterpart of). */
export function replicationTotalOf(c: KindCounts): number {
  return totalOf(c) - c.LEASE;
}

/**
 * LIST: a GET on the bucket itself (ListObjects/ListObjectsV2, with list-type/prefix/delimiter).
 * MULTIPART: create (POST ?uploads), each part (PUT ?partNumber&uploadId), complete (POST ?uploadId),
 * abort (DELETE ?uploadId). DELETE includes the batch DeleteObjects (POST ?delete). LEASE: any request
 * on an object under `lease/` beside `generations/` (ours only: the lease's renewals, its start-up probe),
 * counted apart so that replication traffic compares like for like with Litestream's. OTHER: bucket
 * creation and anything unexpected.
 */
export function classify(method: string, url: string): S3Request {
  const u = new URL(url, 'http://localhost');
  const [, bucket = '', ...rest] = u.pathname.split('/');
  const key = decodeURIComponent(rest.join('/'));
  const q = u.searchParams;
  const [kind, op] = kindOf(method, key, q);
  const prefix = kind === 'LIST' ? (q.get('prefix') ?? '') : undefined;
  return { t: performance.now(), method, bucket: decodeURIComponent(bucket), key, kind, op, ...(prefix !== undefined ? { prefix } : {}) };
}

function kindOf(method: string, key: string, q: URLSearchParams): [RequestKind, string] {
  if (/(^|\/)lease\//.test(key)) return ['LEASE', `${method} lease`];
  if (method === 'POST' && q.has('uploads')) return ['MULTIPART', 'CreateMultipartUpload'];
  if (method === 'PUT' && q.has('uploadId')) return ['MULTIPART', 'UploadPart'];
  if (method === 'POST' && q.has('uploadId')) return ['MULTIPART', 'CompleteMultipartUpload'];
  if (method === 'DELETE' && q.has('uploadId')) return ['MULTIPART', 'AbortMultipartUpload'];
  if (method === 'GET' && key === '') return ['LIST', q.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects'];
  if (method === 'GET') return ['GET', 'GetObject'];
  if (method === 'HEAD') return ['HEAD', key === '' ? 'HeadBucket' : 'HeadObject'];
  if (method === 'PUT' && key !== '') return ['PUT', 'PutObject'];
  if (method === 'DELETE' && key !== '') return ['DELETE', 'DeleteObject'];
  if (method === 'POST' && q.has('delete')) return ['DELETE', 'DeleteObjects'];
  return ['OTHER', `${method} ${key === '' ? 'bucket' : 'object'}`];
}

/**
 * True when this answered request finished writing a snapshot object: a plain PUT, or the
 * CompleteMultipartUpload of one (uploads above the part size go multipart in both tools).
 */
export function completesSnapshot(r: S3Request, status: number): boolean {
  if (status !== 200 || !/\/snapshots\/[0-9a-f]{8}\.snapshot\.lz4$/.test(r.key)) return false;
  return r.op === 'PutObject' || r.op === 'CompleteMultipartUpload';
}
