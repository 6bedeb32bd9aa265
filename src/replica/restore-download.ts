/**
 * The download half of a restore: the snapshot decoded into the output file, then the WAL segments of
 * every index, read ahead concurrently but applied strictly in order, decoded once and their committed
 * transactions written in place as they stream (checked for contiguity and for SQLite's salt/checksum
 * chain first; see wal-apply.ts). Apart from restore-execute.ts, which owns the output file's life.
 */
import type { FileHandle } from 'node:fs/promises';
import type { WalSegmentInfo } from '../client/replica-client.js';
import { describeError, errnoCode, NotFoundError, ReplicateError, throwIfAborted } from '../errors.js';
import { LZ4_BLOCK_SIZE } from '../internal/lz4-frame.js';
import type { ReadBufferLease, ReadBufferPool } from '../internal/read-buffer-pool.js';
import { formatHex8 } from '../layout.js';
import type { WalApplier } from '../sqlite/wal-apply.js';
import type { ReplicaSource } from './listing.js';
import type { ObjectCodec } from './object-codec.js';
import { resumableChunks, type ObjectSource, type OrderedPrefetch, type RetryOptions } from './object-fetch.js';
import type { RestoreOptions } from './restore-options.js';
import type { RestorePlan } from './restore-plan.js';

/** Compressed WAL segment bytes read ahead of the one being applied. */
export const PREFETCH_BUDGET = 4 * 1024 * 1024;

/** Free read buffers kept for the WAL segments' reads: what the reads ahead and the segment applied can hold. */
export const READ_POOL_BYTES = 3 * PREFETCH_BUDGET;

interface SegmentSource extends ObjectSource {
  readonly seg: WalSegmentInfo;
  /** Position of its index in plan.indexes. */
  readonly indexNo: number;
  /** The read buffers its reads took (every attempt's), given back once it has been applied. */
  readonly buffers: ReadBufferLease;
}

export function segmentSources(replica: ReplicaSource, plan: RestorePlan, pool: ReadBufferPool): SegmentSource[] {
  return plan.indexes.flatMap((ix, indexNo) =>
    ix.segments.map((seg) => {
      const where = replica.client.walSegmentLocation(seg);
      const buffers = pool.lease();
      return {
        seg,
        indexNo,
        where,
        size: seg.size,
        buffers,
        open: (signal?: AbortSignal) =>
          openObject(() => replica.client.walSegmentReader(seg, { signal, readBuffers: buffers }), 'wal segment', where),
      };
    }),
  );
}

export interface AppliedIndexes {
  /** Indexes applied (the last one possibly only up to a gap). */
  count: number;
  /** Byte length of the last index applied. */
  lastSize: number;
  /** createdAt of the newest segment whose bytes were applied (ms since the epoch). */
  lastSegmentAt?: number;
  stoppedAt?: string;
}

/**
 * Streams every planned index through the applier, segment after segment: segments of an index must meet
 * (each starts where the decoded bytes before it end), every frame must pass SQLite's checks, and a
 * requested end offset must be reached. With stopAtGap, the first failure of these ends the restore at
 * the last commit before it instead.
 */
export async function applyIndexes(
  codec: ObjectCodec,
  plan: RestorePlan,
  prefetch: OrderedPrefetch,
  applier: WalApplier,
  opts: RestoreOptions,
  buffers: Buffer[],
  readPool: ReadBufferPool,
  onIndexApplied: () => void,
): Promise<AppliedIndexes> {
  const out: AppliedIndexes = { count: 0, lastSize: 0 };
  let current = -1;
  let written = 0;
  let name = '';
  // The snapshot decoder's block buffers, when it had them, serve as the WAL decoder's output and input
  // (the input scratch from the end of the list: the decoder puts its input slots, only as much of them
  // touched as the largest compressed block, last), and the rest as the segments' read buffers (already
  // resident: left to the garbage collector, they stayed in the peak RSS beside new ones). The caller's
  // list is emptied so that nothing else holds them.
  let output: Buffer | undefined = buffers.find((b) => b.length >= LZ4_BLOCK_SIZE);
  const inputScratch: { buffer?: Buffer } = { buffer: [...buffers].reverse().find((b) => b !== output) };
  readPool.seed(buffers.filter((b) => b !== output && b !== inputScratch.buffer));
  buffers.length = 0;

  const endIndex = (): boolean => {
    const ix = plan.indexes[current]!;
    if (ix.endOffset !== undefined && written < ix.endOffset) {
      throw new ReplicateError(
        'WAL_SEGMENT_GAP',
        `wal index ${name} ends at offset ${written}, before the requested offset ${ix.endOffset}`,
        {
          details: { generation: plan.generation, index: ix.index, offset: written, expected: ix.endOffset },
        },
      );
    }
    const scan = applier.endIndex();
    if (!scan.header) throw new ReplicateError('INVALID_WAL', `wal index ${name}: no valid WAL header (${written} bytes)`);
    out.count++;
    out.lastSize = scan.size;
    onIndexApplied();
    if (scan.stopReason !== undefined) {
      // Frames are only ever copied after SQLite's own checks, so an invalid frame means damage.
      const msg = `wal index ${name}: ${scan.stopReason}; ${scan.size - scan.validSize} bytes after it would be ignored`;
      if (!opts.stopAtGap) throw new ReplicateError('INVALID_WAL', msg, { details: { generation: plan.generation, index: ix.index } });
      out.stoppedAt ??= msg;
      return false;
    }
    return true;
  };

  try {
    for await (const { source, body } of prefetch.bodies()) {
      const { seg, indexNo } = source as SegmentSource;
      if (indexNo !== current) {
        if (current >= 0 && !endIndex()) return out;
        current = indexNo;
        written = 0;
        name = `${plan.generation}/${formatHex8(plan.indexes[current]!.index)}`;
        applier.beginIndex(`wal index ${name}`);
      }
      throwIfAborted(opts.signal);
      if (seg.offset !== written) {
        const msg =
          `wal segments of ${name} do not meet: the segment at offset ${seg.offset} follows ` +
          `data that ends at offset ${written} (${source.where})`;
        if (!opts.stopAtGap)
          throw new ReplicateError('WAL_SEGMENT_GAP', msg, {
            details: { generation: plan.generation, index: plan.indexes[current]!.index, offset: seg.offset, expected: written },
          });
        out.stoppedAt = msg;
        endIndex();
        return out;
      }
      const ix = plan.indexes[current]!;
      output ??= Buffer.allocUnsafe(LZ4_BLOCK_SIZE);
      const used = await applySegment(
        codec,
        source.where,
        body,
        applier,
        ix.endOffset === undefined ? Infinity : ix.endOffset - written,
        output,
        inputScratch,
      );
      written += used;
      // Its bytes are decoded and every page kept was copied (the applier holds copies): its read buffers
      // serve the reads still to come.
      (source as SegmentSource).buffers.release();
      if (used > 0) out.lastSegmentAt = Math.max(out.lastSegmentAt ?? 0, seg.createdAt.getTime());
    }
    if (current >= 0) endIndex();
    return out;
  } catch (err) {
    throw wrapStep(err, `downloading wal ${name}`);
  }
}

/** Decodes one segment into the applier; returns the bytes used (a requested end offset can cut it). */
async function applySegment(
  codec: ObjectCodec,
  where: string,
  body: AsyncIterable<Buffer>,
  applier: WalApplier,
  limit: number,
  output: Buffer,
  inputScratch: { buffer?: Buffer },
): Promise<number> {
  let n = 0;
  // The applier copies what it keeps before the next chunk is pulled, so one output buffer serves every
  // block of every segment (segments are decoded one at a time), and one input scratch too.
  for await (let chunk of codec.decode(body, { label: where, outputBuffer: output, inputScratch })) {
    // A segment can run past a requested end position (it was uploaded later, with more frames): the
    // rest is decoded (so the frame's checksums are still checked) but not used.
    if (n + chunk.length > limit) chunk = chunk.subarray(0, limit - n);
    if (chunk.length === 0) continue;
    applier.update(chunk);
    n += chunk.length;
  }
  return n;
}

/** Decodes the snapshot into the (empty) output file; returns its page size and decoded size. */
export async function restoreSnapshot(
  replica: ReplicaSource,
  codec: ObjectCodec,
  plan: RestorePlan,
  handle: FileHandle,
  countBytes: (n: number) => void,
  onRetry: RetryOptions['onRetry'],
  signal?: AbortSignal,
  onFirstBytes?: () => void,
): Promise<{ pageSize: number; size: number; buffers: Buffer[] }> {
  const where = replica.client.snapshotLocation(plan.generation, plan.snapshot.index);
  const source: ObjectSource = {
    where,
    size: plan.snapshot.size,
    // The decoder below is done with each chunk long before it pulls RECYCLE_AFTER_CHUNKS more (it holds
    // at most one 4 MiB block's worth), so a backend may reuse its read buffers. Not when the object may
    // be age-encrypted: the decryption's stream queues are not ours to bound.
    open: (s) =>
      openObject(
        () => replica.client.snapshotReader(plan.generation, plan.snapshot.index, { signal: s, recycleReadBuffers: !codec.decrypts }),
        'snapshot',
        where,
      ),
  };
  async function* counted(): AsyncGenerator<Buffer> {
    let first = onFirstBytes;
    for await (const chunk of resumableChunks(source, { signal, onRetry })) {
      first?.();
      first = undefined;
      countBytes(chunk.length);
      yield chunk;
    }
  }
  let size: number;
  let header: Buffer;
  let buffers: Buffer[];
  try {
    // Decoded and written on a worker thread while this one reads and hashes (lz4-frame-to-file.ts).
    // No fsync here: the finished database is fsynced once, before it is linked into place.
    ({ size, head: header, buffers } = await codec.decodeToFile(counted(), handle.fd, { label: where }));
  } catch (err) {
    throw wrapStep(err, `restoring snapshot ${where}`);
  }
  if (size < 512 || header.subarray(0, 16).toString('latin1') !== 'SQLite format 3\0') {
    throw new ReplicateError('CORRUPT_OBJECT', `restoring snapshot ${where}: decoded data is not a SQLite database`, {
      details: { object: where },
    });
  }
  const raw = header.readUInt16BE(16);
  const pageSize = raw === 1 ? 65536 : raw;
  if (size % pageSize !== 0) {
    throw new ReplicateError(
      'CORRUPT_OBJECT',
      `restoring snapshot ${where}: ${size} bytes is not a whole number of ${pageSize}-byte pages`,
      {
        details: { object: where },
      },
    );
  }
  return { pageSize, size, buffers };
}

async function openObject<T>(fn: () => Promise<T>, what: string, where: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ReplicateError && err.code === 'NOT_FOUND') {
      throw new NotFoundError(`${what} not found: ${where} (it was listed; was it deleted by retention meanwhile?)`, {
        cause: err,
      });
    }
    throw err;
  }
}

export function wrapStep(err: unknown, step: string): unknown {
  if (err instanceof ReplicateError) {
    if (err.message.startsWith(step) || err.code === 'ABORTED') return err;
    const options = { cause: err.cause ?? err, details: err.details };
    // The same class as the error it wraps, so that `instanceof NotFoundError` still holds for the caller.
    if (err instanceof NotFoundError) return new NotFoundError(`${step}: ${err.message}`, options);
    return new ReplicateError(err.code, `${step}: ${err.message}`, options);
  }
  const code = errnoCode(err);
  if (code === 'ENOSPC' || code === 'EACCES' || code === 'EROFS' || code === 'EPERM') {
    return new ReplicateError('OUTPUT_NOT_WRITABLE', `${step}: ${describeError(err)}`, { cause: err });
  }
  return new ReplicateError('IO', `${step}: ${describeError(err)}`, { cause: err });
}
