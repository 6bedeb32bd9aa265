/**
 * Running a restore plan: the output is built under a temp name beside the target (snapshot, then WAL;
 * the decoding is in restore-download.ts), checked with `PRAGMA quick_check` (by default) while it is
 * fsynced, and only then linked into place; a latest-state restore may leave a restore marker. On any
 * failure every temp file (and every directory the restore created) is removed.
 */
import { randomBytes } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { dirname, basename, join, resolve } from 'node:path';
import { DEFAULT_RESTORE_PARALLELISM } from '../config/defaults.js';
import { describeError, ReplicateError, throwIfAborted } from '../errors.js';
import { ReadBufferPool } from '../internal/read-buffer-pool.js';
import { formatHex8 } from '../layout.js';
import { nullLogger, type Logger } from '../logger.js';
import { MetaDir, defaultMetaPath } from '../meta/meta-dir.js';
import { fileDigest, removeRestoreMarker, writeRestoreMarker, RESTORE_MARKER_VERSION } from '../meta/restore-marker.js';
import { WalApplier } from '../sqlite/wal-apply.js';
import type { ReplicaSource } from './listing.js';
import { ObjectCodec } from './object-codec.js';
import { OrderedPrefetch } from './object-fetch.js';
import {
  applyIndexes,
  PREFETCH_BUDGET,
  READ_POOL_BYTES,
  restoreSnapshot,
  segmentSources,
  wrapStep,
  type AppliedIndexes,
} from './restore-download.js';
import type { RestoreOptions, RestoreProgress, RestoreResult } from './restore-options.js';
import { moveAsideAndPlace, moveIntoPlace, prepareOutputDir, removeDirs } from './restore-output.js';
import type { RestorePlan } from './restore-plan.js';

/** Runs a plan made by planReplicaRestore. */
export async function executeRestore(replica: ReplicaSource, plan: RestorePlan, opts: RestoreOptions): Promise<RestoreResult> {
  const log = opts.logger ?? nullLogger;
  const outputPath = resolve(opts.outputPath);
  // Before anything is written: a key the age library rejects fails here.
  const codec = await ObjectCodec.create(replica.age, replica.name);
  const parallelism = Math.max(1, opts.parallelism ?? DEFAULT_RESTORE_PARALLELISM);
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
  const onRetry = (where: string, attempt: number, err: unknown) =>
    log.warn('reading an object failed; trying again', { object: where, attempt, error: describeError(err) });

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
  const readPool = new ReadBufferPool(READ_POOL_BYTES);
  const prefetch = new OrderedPrefetch(segmentSources(replica, plan, readPool), {
    concurrency: parallelism,
    budgetBytes: PREFETCH_BUDGET,
    signal: opts.signal,
    onBytes: countBytes,
    onRetry,
  });
  let handle: FileHandle | undefined;
  let applier: WalApplier | undefined;
  let flusher: BackgroundSync | undefined; // for the finally block; the try block uses `background`
  try {
    handle = await open(tmpPath, 'wx', 0o600).catch((err: unknown) => {
      throw new ReplicateError('OUTPUT_NOT_WRITABLE', `creating ${tmpPath}: ${describeError(err)}`, { cause: err });
    });
    // The WAL's reads ahead start once the snapshot's first bytes are in, not before its request: from an
    // object store they would otherwise queue ahead of it (the snapshot is what the restore waits on),
    // and they go out through the lean path its GetObject records (s3-object-get.ts), not the SDK's.
    const { pageSize, size, buffers } = await restoreSnapshot(replica, codec, plan, handle, countBytes, onRetry, opts.signal, () =>
      prefetch.start(),
    );
    throwIfAborted(opts.signal);
    // The snapshot's pages go to disk on the thread pool while the WAL is applied on this thread, and
    // each WAL index's pages after it, so the fsync at the end has only the last pages left to write.
    const background = new BackgroundSync(handle);
    flusher = background;
    background.kick();

    report('apply');
    applier = new WalApplier(handle, size / pageSize, { pageSize, spillPath });
    const applied = await applyIndexes(codec, plan, prefetch, applier, opts, buffers, readPool, () => {
      background.kick();
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
    const synced = handle.sync().then(
      () => background.settle(),
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
    await flusher?.settle();
    applier?.close();
    await handle?.close().catch(() => undefined);
    for (const f of tmpFiles) await rm(f, { force: true }).catch(() => undefined);
    if (!succeeded) await removeDirs(createdDirs);
  }
}

/**
 * Flushes the output file on the thread pool while the restore goes on: one datasync at a time, started
 * after the snapshot and after each WAL index, so that the final fsync (which runs beside the check, or
 * alone with `-integrity-check none`) finds little left to write. A failure is kept for the end, where
 * the final fsync's result is taken: nothing is linked into place unless every flush succeeded.
 */
class BackgroundSync {
  private running: Promise<void> | undefined;
  private failure: unknown;

  constructor(private readonly handle: FileHandle) {}

  /** Starts a datasync, unless one is still running (it will write what is dirty by then, or the next will). */
  kick(): void {
    if (this.running) return;
    this.running = this.handle.datasync().then(
      () => {
        this.running = undefined;
      },
      (err: unknown) => {
        this.failure ??= err;
        this.running = undefined;
      },
    );
  }

  /** Waits for the flush still running; the first failure of any of them, else undefined. */
  async settle(): Promise<unknown> {
    await this.running;
    return this.failure;
  }
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
  replica: ReplicaSource,
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
    if (typeof end.digest === 'string') throw new ReplicateError('IO', `digesting the restored database: ${end.digest}`);
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
    log.debug('restore marker written', {
      path: meta.restoreMarkerPath(),
      generation: end.generation,
      index: formatHex8(end.index),
      offset: end.offset,
    });
    return true;
  } catch (err) {
    log.warn('cannot write the restore marker; replication will start a new generation', {
      path: meta.restoreMarkerPath(),
      error: describeError(err),
    });
    return false;
  }
}
