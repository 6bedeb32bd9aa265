/**
 * Restore: find the target (restore-preview.ts; planning is pure, in restore-plan.ts), then download
 * and apply it (restore-execute.ts, restore-download.ts). `previewRestore` is the dry run: the same
 * listing and planning, no download, no write. This module is the entry point the library and the CLI
 * import; the others are its parts.
 */
import { resolve } from 'node:path';
import { isReplicateError } from '../errors.js';
import { prestartDecodeWorker } from '../internal/lz4-frame-to-file.js';
import type { ReplicaSource } from './listing.js';
import { executeRestore } from './restore-execute.js';
import type { RestoreOptions, RestoreResult } from './restore-options.js';
import { assertOutputFree } from './restore-output.js';
import { planReplicaRestore } from './restore-preview.js';

export { INTEGRITY_CHECKS, type IntegrityCheck, type RestoreOptions, type RestoreProgress, type RestoreResult } from './restore-options.js';
export { planReplicaRestore, previewRestore, type PreviewRestoreOptions, type RestorePreview } from './restore-preview.js';
export { executeRestore } from './restore-execute.js';

/** Restores the newest matching state from the replicas to `opts.outputPath`. */
export async function restore(replicas: readonly ReplicaSource[], opts: RestoreOptions): Promise<RestoreResult> {
  const outputPath = resolve(opts.outputPath);
  await assertOutputFree(outputPath).catch((err: unknown) => {
    // With replaceExisting an existing output is expected; whether it is in use is asked only once the
    // restore is ready to take its place: asking SQLite opens the database, and a check that passes folds
    // its WAL into it, which must not happen to a database that a failed restore then leaves where it was.
    if (!(opts.replaceExisting && isReplicateError(err, 'OUTPUT_EXISTS'))) throw err;
  });
  // The snapshot's decode worker starts while the replica is listed (unless a caller started one already).
  const releaseWorker = prestartDecodeWorker();
  try {
    const { replica, plan } = await planReplicaRestore(replicas, opts);
    return await executeRestore(replica, plan, { ...opts, outputPath });
  } finally {
    await releaseWorker();
  }
}
