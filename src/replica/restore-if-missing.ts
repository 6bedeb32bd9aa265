/**
 * The start-up restore of a container or service that keeps its database on a volume that may be new:
 * when the database file is missing, bring back its latest state from the replicas; when the replicas
 * hold no backup at all, it is a first boot and the application starts fresh. Anything else (a store
 * that cannot be reached, access denied, a missing bucket, a damaged object, a lineage with nothing
 * restorable) is an error, raised before any file is created: starting empty over a real lineage would
 * begin a second history beside the one the operator needs back.
 *
 * `replicate -restore-if-db-not-exists` runs this before replicating; an embedded application calls it
 * before `startReplication`.
 */
import { lstat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describeError, errnoCode, isReplicateError, ReplicateError } from '../errors.js';
import { nullLogger } from '../logger.js';
import { formatPos } from '../pos.js';
import type { ReplicaClient } from '../client/replica-client.js';
import type { ReplicaSource } from './listing.js';
import type { AgeOptions } from './object-codec.js';
import { restore, type RestoreOptions, type RestoreResult } from './restore.js';

export type RestoreIfMissingOptions = Pick<
  RestoreOptions,
  'parallelism' | 'integrityCheck' | 'metaPath' | 'restoreMarker' | 'onProgress' | 'signal' | 'logger'
>;

export type RestoreIfMissingOutcome =
  /** The database file was there; nothing was read or written. */
  | { readonly kind: 'exists'; readonly dbPath: string }
  /** No replica holds any generation: a first boot. Nothing was written. */
  | { readonly kind: 'no-backup'; readonly dbPath: string; readonly reason: string }
  /** The latest state was restored; `stateAt` is the time of the last applied WAL segment (or snapshot). */
  | { readonly kind: 'restored'; readonly dbPath: string; readonly result: RestoreResult; readonly stateAt: Date };

/**
 * Restores `dbPath` from `replicas` when the file does not exist. Throws (a ReplicateError naming what
 * failed) on any failure other than "the replicas hold no backup at all"; the output is then untouched.
 */
export async function restoreIfMissing(
  dbPath: string,
  replicaSpecs: readonly { readonly name?: string; readonly client: ReplicaClient; readonly age?: AgeOptions }[],
  opts: RestoreIfMissingOptions = {},
): Promise<RestoreIfMissingOutcome> {
  const log = opts.logger ?? nullLogger;
  // The replicas of a ReplicationOptions (their default name is the client's type, as replication names them).
  const replicas: ReplicaSource[] = replicaSpecs.map((r) => ({ name: r.name ?? r.client.type, client: r.client, age: r.age }));
  const path = resolve(dbPath);
  if (await fileExists(path)) {
    log.info('database exists, not restoring', { db: path });
    return { kind: 'exists', dbPath: path };
  }
  if (replicas.length === 0) throw new ReplicateError('CONFIG', `no replicas configured for ${path}: nothing to restore it from`);
  try {
    const result = await restore(replicas, { ...opts, outputPath: path });
    const stateAt = result.stateAt;
    log.info('database restored', {
      db: path,
      replica: result.plan.replica,
      generation: result.plan.generation,
      stateAt: stateAt.toISOString(),
      position: formatPos(result.position),
    });
    return { kind: 'restored', dbPath: path, result, stateAt };
  } catch (err) {
    // Only a store with no generation at all is a first boot. A lineage with nothing restorable in it
    // is a backup in trouble, not an empty one.
    if (isReplicateError(err, 'NO_BACKUPS') && err.details.empty === true) {
      log.info('no backup found, starting with a new database', { db: path, reason: err.message });
      return { kind: 'no-backup', dbPath: path, reason: err.message };
    }
    if (err instanceof ReplicateError) throw err;
    throw new ReplicateError('IO', `restoring ${path} at start-up: ${describeError(err)}`, { cause: err });
  }
}

async function fileExists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    (err: unknown) => {
      if (errnoCode(err) === 'ENOENT') return false;
      throw new ReplicateError('OUTPUT_NOT_WRITABLE', `cannot check whether ${path} exists: ${describeError(err)}`, {
        cause: err,
        details: { path },
      });
    },
  );
}
