/**
 * Restore: find the target (planning is pure, in restore-plan.ts), then download and apply it.
 *
 * The output is built under a temp name beside the target: the snapshot is decoded into it, then the WAL
 * segments of every index, read ahead concurrently but applied strictly in order, are decoded once and
 * their committed transactions written in place as they stream (checked for contiguity and for SQLite's
 * salt/checksum chain first; see wal-apply.ts). The result is checked with `PRAGMA quick_check` (by
 * default) while it is fsynced, and only then linked into place. On any failure every temp file
 * (and every directory the restore created) is removed. `previewRestore` is the dry run: the same
 * listing and planning, no download, no write.
 */
import { randomBytes } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { dirname, basename, join, resolve } from 'node:path';
import type { WalSegmentInfo } from '../client/replica-client.js';
import { describeError, errnoCode, isReplicateError, ReplicateError, throwIfAborted, type ErrorCode } from '../errors.js';
import { LZ4_BLOCK_SIZE } from '../internal/lz4-frame.js';
import { formatHex8 } from '../layout.js';
import type { Pos } from '../pos.js';
import { nullLogger, type Logger } from '../logger.js';
import { MetaDir, defaultMetaPath } from '../shipper/meta.js';
import { fileDigest, removeRestoreMarker, writeRestoreMarker, RESTORE_MARKER_VERSION } from '../shipper/restore-marker.js';
import { WalApplier } from '../sqlite/wal-apply.js';
import { listReplica, type NamedReplica } from './listing.js';
import { ObjectCodec } from './object-codec.js';
import { OrderedPrefetch, resumableChunks, type ObjectSource, type RetryOptions } from './object-fetch.js';
import { assertOutputFree, moveAsideAndPlace, moveIntoPlace, prepareOutputDir, removeDirs } from './restore-output.js';
import {
  chooseGeneration,
  formatRestorableRanges,
  planRestore,
  restorableRanges,
  restoreTarget,
  summarizePlan,
  timestampOutOfRange,
  type GenerationListing,
  type RestorePlan,
  type RestorePlanSummary,
} from './restore-plan.js';

export const INTEGRITY_CHECKS = ['none', 'quick', 'full'] as const;
export type IntegrityCheck = (typeof INTEGRITY_CHECKS)[number];

export interface RestoreProgress {
  phase: 'download' | 'apply' | 'check' | 'done';
  /** Stored bytes downloaded so far. */
  bytesDone: number;
  bytesTotal: number;
  indexesApplied: number;
  indexesTotal: number;
}

export interface RestoreOptions {
  /** Where the restored database goes; must not exist (unless `replaceExisting`). */
  outputPath: string;
  /**
   * When a database is at `outputPath` already: once the restore has succeeded (built, checked and
   * fsynced under a temp name), rename it and its `-wal`, `-shm` and `-journal` aside to
   * `<output>.replaced-<UTC time>` and put the restored database in its place. Refused with
   * DATABASE_IN_USE (the temp file removed, the existing files untouched) while another process has the
   * database open; that is asked just before the renames.
   */
  replaceExisting?: boolean;
  generation?: string;
  index?: number;
  timestamp?: Date;
  /** WAL segments read at once, ahead of the one being applied (default 8, at least 1). */
  parallelism?: number;
  integrityCheck?: IntegrityCheck;
  /** On a gap, restore up to the last consistent point instead of failing. */
  stopAtGap?: boolean;
  /**
   * The output's meta directory (default `.<db>-litestream` beside it, as replication uses). A restore of
   * a generation's latest state leaves a restore marker there so that replication can continue the
   * generation (see restore-marker.ts).
   */
  metaPath?: string;
  /**
   * Leave the restore marker after a restore of the latest state (default false), for replication with
   * `continue-after-restore`. It costs a SHA-256 of the whole restored file, so it is taken only when
   * asked for. Without it a stale marker in the output's meta directory is removed.
   */
  restoreMarker?: boolean;
  logger?: Logger;
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
}

export interface RestoreResult {
  outputPath: string;
  plan: RestorePlan;
  /**
   * The replica position the restored database corresponds to: the end of the last WAL index applied, or
   * the snapshot's index at offset 0 when no WAL was applied.
   */
  position: Pos;
  /**
   * The point in time restored: the creation time of the last WAL segment applied (the upload that
   * carried the last transaction restored), or of the snapshot when it is later or no WAL was applied.
   */
  stateAt: Date;
  /** With `replaceExisting`: the names the files that were at the output path were moved to. */
  movedAside?: string[];
  /** Indexes actually applied (fewer than planned only with stopAtGap). */
  indexesApplied: number;
  /** Set when stopAtGap cut the restore short. */
  stoppedAt?: string;
  /** Set when a restore marker was written: the replica position the restored database corresponds to. */
  markerWritten?: { generation: string; index: number; offset: number };
}

/**
 * Lists the replicas and plans a restore. Throws NO_BACKUPS when nothing matches, and
 * TIMESTAMP_OUT_OF_RANGE when the timestamp is before the earliest restorable point of every generation.
 */
export async function planReplicaRestore(
  replicas: readonly NamedReplica[],
  opts: Pick<RestoreOptions, 'generation' | 'index' | 'timestamp' | 'stopAtGap' | 'signal'>,
): Promise<{ replica: NamedReplica; plan: RestorePlan }> {
  const { replica, plan } = await planWithListings(replicas, opts);
  return { replica, plan };
}

async function planWithListings(
  replicas: readonly NamedReplica[],
  opts: Pick<RestoreOptions, 'generation' | 'index' | 'timestamp' | 'stopAtGap' | 'signal'>,
): Promise<{ replica: NamedReplica; plan: RestorePlan; listings: GenerationListing[] }> {
  if (opts.index !== undefined && opts.timestamp !== undefined) {
    throw new ReplicateError('INVALID_ARGUMENT', 'cannot specify index & timestamp to restore');
  }
  const listings: GenerationListing[] = [];
  for (const r of replicas) listings.push(...(await listReplica(r, { generation: opts.generation, signal: opts.signal })));
  const chosen = chooseGeneration(listings, { generation: opts.generation, timestamp: opts.timestamp });
  if (!chosen) {
    const where = replicas.map((r) => `${r.name} (${r.client.location})`).join(', ');
    if (listings.length === 0) {
      const what = opts.generation !== undefined ? `generation ${opts.generation} not found` : 'replica is empty (no generations)';
      throw new ReplicateError('NO_BACKUPS', `no matching backups found: ${what} in ${where}`, { details: { empty: true } });
    }
    if (opts.timestamp !== undefined) {
      const tooEarly = timestampOutOfRange(listings, opts.timestamp, where);
      if (tooEarly) throw tooEarly;
    }
    const why = opts.timestamp !== undefined ? ` at or before ${opts.timestamp.toISOString()}` : '';
    throw new ReplicateError('NO_BACKUPS', `no matching backups found${why} in ${where}; restorable: ${formatRestorableRanges(restorableRanges(listings))}`, {
      details: { empty: false },
    });
  }
  const replica = replicas.find((r) => r.name === chosen.replica)!;
  return { replica, plan: planRestore(chosen, opts), listings };
}

export interface PreviewRestoreOptions extends Pick<RestoreOptions, 'generation' | 'index' | 'timestamp' | 'stopAtGap' | 'signal' | 'replaceExisting'> {
  /** When given, the preview says whether a restore could write there (read-only check). */
  outputPath?: string;
}

/** A dry run: what `restore` would download and apply, as plain data. */
export interface RestorePreview extends RestorePlanSummary {
  /** The chosen replica's backend type ("file", "s3", …) and location (never with secrets). */
  readonly replicaType: string;
  readonly replicaLocation: string;
  /** Set when `outputPath` was given; `error` is what a restore would fail with (OUTPUT_EXISTS, OUTPUT_NOT_WRITABLE). */
  readonly output?: {
    readonly path: string;
    readonly error?: { readonly code: ErrorCode; readonly message: string };
    /** With `replaceExisting`: a database is there, and a restore would move it aside. */
    readonly replaces?: boolean;
  };
}

/**
 * Plans a restore exactly as `restore` does (same replica, generation, snapshot and WAL segments, same
 * errors) but downloads no object and writes nothing.
 */
export async function previewRestore(replicas: readonly NamedReplica[], opts: PreviewRestoreOptions = {}): Promise<RestorePreview> {
  const { replica, plan, listings } = await planWithListings(replicas, opts);
  const summary = summarizePlan(plan, listings, restoreTarget(opts));
  let output: RestorePreview['output'];
  if (opts.outputPath !== undefined) {
    const path = resolve(opts.outputPath);
    const error = await assertOutputFree(path).then(
      () => undefined,
      (err: unknown) => {
        if (err instanceof ReplicateError) return { code: err.code, message: err.message };
        throw err;
      },
    );
    if (error?.code === 'OUTPUT_EXISTS' && opts.replaceExisting) output = { path, replaces: true };
    else output = error ? { path, error } : { path };
  }
  return { ...summary, replicaType: replica.client.type, replicaLocation: replica.client.location, output };
}

/** Restores the newest matching state from the replicas to `opts.outputPath`. */
export async function restore(replicas: readonly NamedReplica[], opts: RestoreOptions): Promise<RestoreResult> {
  const outputPath = resolve(opts.outputPath);
  await assertOutputFree(outputPath).catch((err: unknown) => {
    // With replaceExisting an existing output is expected; whether it is in use is asked only once the
    // restore is ready to take its place: asking SQLite opens the database, and a check that passes folds
    // its WAL into it, which must not happen to a database that a failed restore then leaves where it was.
    if (!(opts.replaceExisting && isReplicateError(err, 'OUTPUT_EXISTS'))) throw err;
  });
  const { replica, plan } = await planReplicaRestore(replicas, opts);
  return executeRestore(replica, plan, { ...opts, outputPath });
}

/** Runs a plan made by planReplicaRestore. */
export async function executeRestore(replica: NamedReplica, plan: RestorePlan, opts: RestoreOptions): Promise<RestoreResult> {
  const log = opts.logger ?? nullLogger;
  const outputPath = resolve(opts.outputPath);
  // Before anything is written: a key the age library rejects fails here.
  const codec = await ObjectCodec.create(replica.age, replica.name);
  const parallelism = Math.max(1, opts.parallelism ?? 8);
  const integrity = opts.integrityCheck ?? 'quick';
  // SQLite (better-sqlite3) is needed only for the check at the end: it loads now, while this thread
  // mostly waits on the snapshot's decoding, instead of at start-up (and not at all without a check).
  const integrityModule = integrity === 'none' ? undefined : import('../sqlite/restore-db.js');
  integrityModule?.catch(() => undefined); // awaited (and its failure reported) at the check
  const createdDirs = await prepareOutputDir(outputPath);
  const tmpPath = join(dirname(outputPath), `.${basename(outputPath)}.${randomBytes(4).toString('hex')}.restore-tmp`);
  const spillPath = `${tmpPath}-spill`;
  const tmpFiles = [tmpPath, `${tmpPath}-wal`, `${tmpPath}-shm`, `${tmpPath}-journal`, spillPath];

  const progress: RestoreProgress = {
    phase: 'download',
    bytesDone: 0,
    bytesTotal: plan.bytesTotal,
    indexesApplied: 0,
    indexesTotal: plan.indexes.length,
  };
  const report = (phase: RestoreProgress['phase']) => {
    progress.phase = phase;
    opts.onProgress?.({ ...progress });
  };
  const countBytes = (n: number) => {
    progress.bytesDone += n;
    opts.onProgress?.({ ...progress });
  };
  const onRetry = (where: string, attempt: number, err: unknown) => log.warn('reading an object failed; trying again', { object: where, attempt, error: describeError(err) });

  log.info('restoring', {
    replica: plan.replica,
    generation: plan.generation,
    snapshot: formatHex8(plan.snapshot.index),
    indexes: plan.indexes.length,
    bytes: plan.bytesTotal,
    output: outputPath,
  });
  report('download');

  let succeeded = false;
  // Every WAL segment of every index, in order: read ahead (while the snapshot is still decoding), applied in turn.
  const prefetch = new OrderedPrefetch(segmentSources(replica, plan), {
    concurrency: parallelism,
    budgetBytes: PREFETCH_BUDGET,
    signal: opts.signal,
    onBytes: countBytes,
    onRetry,
  });
  let handle: FileHandle | undefined;
  let applier: WalApplier | undefined;
  let snapshotSynced: Promise<unknown> | undefined;
  try {
    handle = await open(tmpPath, 'wx', 0o600).catch((err: unknown) => {
      throw new ReplicateError('OUTPUT_NOT_WRITABLE', `creating ${tmpPath}: ${describeError(err)}`, { cause: err });
    });
    prefetch.start();
    const { pageSize, size, buffers } = await restoreSnapshot(replica, codec, plan, handle, countBytes, onRetry, opts.signal);
    throwIfAborted(opts.signal);
    // The snapshot's pages go to disk on the thread pool while the WAL is applied on this thread, so the
    // fsync at the end has only the WAL's pages left to write (it was ~70 ms after a 200 MB restore).
    snapshotSynced = handle.datasync().then(
      () => undefined,
      (err: unknown) => err,
    );

    report('apply');
    applier = new WalApplier(handle, size / pageSize, { pageSize, spillPath });
    const applied = await applyIndexes(codec, plan, prefetch, applier, opts, buffers, () => {
      progress.indexesApplied++;
      opts.onProgress?.({ ...progress });
    });
    try {
      applier.finish();
    } catch (err) {
      throw wrapStep(err, `applying wal ${plan.generation}/${formatHex8(plan.snapshot.index)}..`);
    }
    applier.close();
    const stoppedAt = applied.stoppedAt ?? plan.truncatedReason;
    if (stoppedAt) log.warn('restore stopped at a gap', { reason: stoppedAt });

    // The fsync runs on the thread pool while SQLite checks the file on this thread: both are needed, and
    // neither waits for the other.
    report('check');
    const early = snapshotSynced;
    const synced = handle.sync().then(
      async () => (await early) ?? undefined,
      (err: unknown) => err,
    );
    let checkFailure: unknown;
    try {
      if (integrity !== 'none') (await integrityModule!).checkIntegrity(tmpPath, integrity);
    } catch (err) {
      checkFailure = err;
    }
    const syncFailure = await synced;
    if (checkFailure !== undefined) throw checkFailure as Error; // the check's own error, passed on as it was
    if (syncFailure !== undefined) throw wrapStep(syncFailure, `syncing ${tmpPath}`);
    await handle.close();
    handle = undefined;

    // Only the latest state of the generation is the replica's end: after a point-in-time restore, new
    // writes would fork the history, which needs a new generation. The file is digested before it gets
    // its name (same inode, same bytes), so an application that opens it at once cannot slip a
    // checkpoint in between and have its changes taken for the restored state. The digest reads the
    // whole file, so it is taken only when a marker is wanted (replication with continue-after-restore).
    const cut = plan.indexes.some((i) => i.endOffset !== undefined);
    const latest = opts.timestamp === undefined && opts.index === undefined && stoppedAt === undefined && !cut;
    const endPos = { generation: plan.generation, ...restoredEnd(plan, applied) };
    const wantMarker = opts.restoreMarker === true && latest;
    const digest = wantMarker ? await fileDigest(tmpPath).catch((err: unknown) => describeError(err)) : undefined;
    let movedAside: string[] | undefined;
    if (opts.replaceExisting) {
      const { assertDatabaseNotInUse } = await import('../sqlite/database-in-use.js');
      movedAside = await moveAsideAndPlace(tmpPath, outputPath, assertDatabaseNotInUse, new Date());
      if (movedAside.length > 0) log.info('existing database moved aside', { output: outputPath, movedTo: movedAside.join(',') });
    } else {
      await moveIntoPlace(tmpPath, outputPath, { synced: true });
    }
    succeeded = true;
    const markerWritten = await recordRestore(replica, outputPath, digest === undefined ? undefined : { ...endPos, digest }, opts, log);
    report('done');
    log.info('restore complete', { output: outputPath, indexes: applied.count });
    const stateAt = new Date(Math.max(plan.snapshot.createdAt.getTime(), applied.lastSegmentAt ?? 0));
    return {
      outputPath,
      plan,
      position: endPos,
      stateAt,
      indexesApplied: applied.count,
      stoppedAt,
      ...(markerWritten ? { markerWritten: endPos } : {}),
      ...(movedAside && movedAside.length > 0 ? { movedAside } : {}),
    };
  } finally {
    await prefetch.close();
    await snapshotSynced;
    applier?.close();
    await handle?.close().catch(() => undefined);
    for (const f of tmpFiles) await rm(f, { force: true }).catch(() => undefined);
    if (!succeeded) await removeDirs(createdDirs);
  }
}

/** Compressed WAL segment bytes read ahead of the one being applied. */
const PREFETCH_BUDGET = 4 * 1024 * 1024;

interface SegmentSource extends ObjectSource {
  readonly seg: WalSegmentInfo;
  /** Position of its index in plan.indexes. */
  readonly indexNo: number;
}

function segmentSources(replica: NamedReplica, plan: RestorePlan): SegmentSource[] {
  return plan.indexes.flatMap((ix, indexNo) =>
    ix.segments.map((seg) => {
      const where = replica.client.walSegmentLocation(seg);
      return {
        seg,
        indexNo,
        where,
        size: seg.size,
        open: (signal?: AbortSignal) => openObject(() => replica.client.walSegmentReader(seg, { signal }), 'wal segment', where),
      };
    }),
  );
}

interface AppliedIndexes {
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
async function applyIndexes(
  codec: ObjectCodec,
  plan: RestorePlan,
  prefetch: OrderedPrefetch,
  applier: WalApplier,
  opts: RestoreOptions,
  buffers: Buffer[],
  onIndexApplied: () => void,
): Promise<AppliedIndexes> {
  const out: AppliedIndexes = { count: 0, lastSize: 0 };
  let current = -1;
  let written = 0;
  let name = '';
  // The snapshot decoder's block buffers, when it had them, serve as the WAL decoder's output and input.
  let output: Buffer | undefined = buffers.find((b) => b.length >= LZ4_BLOCK_SIZE);
  const inputScratch: { buffer?: Buffer } = { buffer: buffers.find((b) => b !== output) };

  const endIndex = (): boolean => {
    const ix = plan.indexes[current]!;
    if (ix.endOffset !== undefined && written < ix.endOffset) {
      throw new ReplicateError('WAL_SEGMENT_GAP', `wal index ${name} ends at offset ${written}, before the requested offset ${ix.endOffset}`, {
        details: { generation: plan.generation, index: ix.index, offset: written, expected: ix.endOffset },
      });
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
        if (!opts.stopAtGap) throw new ReplicateError('WAL_SEGMENT_GAP', msg, { details: { generation: plan.generation, index: plan.indexes[current]!.index, offset: seg.offset, expected: written } });
        out.stoppedAt = msg;
        endIndex();
        return out;
      }
      const ix = plan.indexes[current]!;
      output ??= Buffer.allocUnsafe(LZ4_BLOCK_SIZE);
      const used = await applySegment(codec, source.where, body, applier, ix.endOffset === undefined ? Infinity : ix.endOffset - written, output, inputScratch);
      written += used;
      if (used > 0) out.lastSegmentAt = Math.max(out.lastSegmentAt ?? 0, seg.createdAt.getTime());
    }
    if (current >= 0) endIndex();
    return out;
  } catch (err) {
    throw wrapStep(err, `downloading wal ${name}`);
  }
}

/** Decodes one segment into the applier; returns the bytes used (a requested end offset can cut it). */
async function applySegment(codec: ObjectCodec, where: string, body: AsyncIterable<Buffer>, applier: WalApplier, limit: number, output: Buffer, inputScratch: { buffer?: Buffer }): Promise<number> {
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

/**
 * The replica position the restored database corresponds to, as the replica's own position recovery
 * computes it: the end of the last index applied (its segments meet from offset 0, so its byte length),
 * or the snapshot's index at offset 0 when no WAL was applied.
 */
function restoredEnd(plan: RestorePlan, applied: AppliedIndexes): { index: number; offset: number } {
  if (applied.count === 0) return { index: plan.snapshot.index, offset: 0 };
  return { index: plan.indexes[applied.count - 1]!.index, offset: applied.lastSize };
}

/** The restored file's digest, or why it could not be taken (a marker is then not written). */
type FileDigestOrFailure = { size: number; sha256: string } | string;

/**
 * Writes the restore marker (when `end` is given) or removes a stale one. Best effort: the database is
 * already in place, and without a marker replication merely starts a new generation.
 */
async function recordRestore(
  replica: NamedReplica,
  outputPath: string,
  end: { generation: string; index: number; offset: number; digest: FileDigestOrFailure } | undefined,
  opts: RestoreOptions,
  log: Logger,
): Promise<boolean> {
  const meta = new MetaDir(opts.metaPath ?? defaultMetaPath(outputPath));
  try {
    if (!end) {
      await removeRestoreMarker(meta);
      return false;
    }
    await meta.adoptPermissionsOf(outputPath); // the marker and its directory: the restored database's mode and owner
    if (typeof end.digest === 'string') throw new Error(`digesting the restored database: ${end.digest}`);
    const { size, sha256 } = end.digest;
    await writeRestoreMarker(meta, {
      version: RESTORE_MARKER_VERSION,
      generation: end.generation,
      index: end.index,
      offset: end.offset,
      replica: replica.name,
      location: replica.client.location,
      size,
      sha256,
      restoredAt: new Date().toISOString(),
    });
    log.debug('restore marker written', { path: meta.restoreMarkerPath(), generation: end.generation, index: formatHex8(end.index), offset: end.offset });
    return true;
  } catch (err) {
    log.warn('cannot write the restore marker; replication will start a new generation', { path: meta.restoreMarkerPath(), error: describeError(err) });
    return false;
  }
}

/** Decodes the snapshot into the (empty) output file; returns its page size and decoded size. */
async function restoreSnapshot(
  replica: NamedReplica,
  codec: ObjectCodec,
  plan: RestorePlan,
  handle: FileHandle,
  countBytes: (n: number) => void,
  onRetry: RetryOptions['onRetry'],
  signal?: AbortSignal,
): Promise<{ pageSize: number; size: number; buffers: Buffer[] }> {
  const where = replica.client.snapshotLocation(plan.generation, plan.snapshot.index);
  const source: ObjectSource = {
    where,
    size: plan.snapshot.size,
    // The decoder below is done with each chunk long before it pulls RECYCLE_AFTER_CHUNKS more (it holds
    // at most one 4 MiB block's worth), so a backend may reuse its read buffers. Not when the object may
    // be age-encrypted: the decryption's stream queues are not ours to bound.
    open: (s) => openObject(() => replica.client.snapshotReader(plan.generation, plan.snapshot.index, { signal: s, recycleReadBuffers: !codec.decrypts }), 'snapshot', where),
  };
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of resumableChunks(source, { signal, onRetry })) {
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
    throw new ReplicateError('CORRUPT_OBJECT', `restoring snapshot ${where}: ${size} bytes is not a whole number of ${pageSize}-byte pages`, {
      details: { object: where },
    });
  }
  return { pageSize, size, buffers };
}

async function openObject<T>(fn: () => Promise<T>, what: string, where: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ReplicateError && err.code === 'NOT_FOUND') {
      throw new ReplicateError('NOT_FOUND', `${what} not found: ${where} (it was listed; was it deleted by retention meanwhile?)`, {
        cause: err,
      });
    }
    throw err;
  }
}

function wrapStep(err: unknown, step: string): unknown {
  if (err instanceof ReplicateError) {
    if (err.message.startsWith(step) || err.code === 'ABORTED') return err;
    return new ReplicateError(err.code, `${step}: ${err.message}`, { cause: err.cause ?? err, details: err.details });
  }
  const code = errnoCode(err);
  if (code === 'ENOSPC' || code === 'EACCES' || code === 'EROFS' || code === 'EPERM') {
    return new ReplicateError('OUTPUT_NOT_WRITABLE', `${step}: ${describeError(err)}`, { cause: err });
  }
  return new ReplicateError('IO', `${step}: ${describeError(err)}`, { cause: err });
}

