/**
 * Finding what to restore: lists the replicas and plans the restore (the rule itself is pure, in
 * restore-plan.ts), for `restore` and for its dry run, `previewRestore`, which stops there (no
 * download, no write). Apart from the download: everything here only lists and reads.
 */
import { resolve } from 'node:path';
import { ReplicateError, type ErrorCode } from '../errors.js';
import { listReplica, type ReplicaSource } from './listing.js';
import { assertOutputFree } from './restore-output.js';
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
import type { RestoreOptions } from './restore-options.js';

/**
 * Lists the replicas and plans a restore. Throws NO_BACKUPS when nothing matches, and
 * TIMESTAMP_OUT_OF_RANGE when the timestamp is before the earliest restorable point of every generation.
 */
export async function planReplicaRestore(
  replicas: readonly ReplicaSource[],
  opts: Pick<RestoreOptions, 'generation' | 'index' | 'timestamp' | 'stopAtGap' | 'signal'>,
): Promise<{ replica: ReplicaSource; plan: RestorePlan }> {
  const { replica, plan } = await planWithListings(replicas, opts);
  return { replica, plan };
}

async function planWithListings(
  replicas: readonly ReplicaSource[],
  opts: Pick<RestoreOptions, 'generation' | 'index' | 'timestamp' | 'stopAtGap' | 'signal'>,
): Promise<{ replica: ReplicaSource; plan: RestorePlan; listings: GenerationListing[] }> {
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
    throw new ReplicateError(
      'NO_BACKUPS',
      `no matching backups found${why} in ${where}; restorable: ${formatRestorableRanges(restorableRanges(listings))}`,
      {
        details: { empty: false },
      },
    );
  }
  const replica = replicas.find((r) => r.name === chosen.replica)!;
  return { replica, plan: planRestore(chosen, opts), listings };
}

export interface PreviewRestoreOptions extends Pick<
  RestoreOptions,
  'generation' | 'index' | 'timestamp' | 'stopAtGap' | 'signal' | 'replaceExisting'
> {
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
export async function previewRestore(replicas: readonly ReplicaSource[], opts: PreviewRestoreOptions = {}): Promise<RestorePreview> {
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
