/**
 * Validation (docs/config.md, "Replica validation"; how it differs from Litestream's: docs/compatibility.md,
 * "Replication"): pin the live database at a position, have the replica upload up to it, restore the
 * replica to exactly that position in the meta directory and compare the two page images (see
 * database-digest.ts). A mismatch is a result (logged as an error), not an exception; failing to pin,
 * reach or restore the position throws.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ReplicaClient } from '../client/replica-client.js';
import { describeError, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import type { Logger } from '../logger.js';
import { comparePos, formatPos, type Pos } from '../pos.js';
import { digestDatabaseFile, type DatabaseDigest } from '../shipper/database-digest.js';
import type { WalShipper } from '../shipper/wal-shipper.js';
import { listGeneration } from './listing.js';
import { executeRestore } from './restore.js';
import { planRestore } from './restore-plan.js';
import type { AgeOptions } from './object-codec.js';

/** One validation: the replica restored at `position` against the live database there. */
export interface ValidationResult {
  status: 'ok' | 'mismatch';
  position: Pos;
  /** Digest of the live database at `position`. */
  expected: DatabaseDigest;
  /** Digest of the replica restored to `position`. */
  actual: DatabaseDigest;
  elapsedMs: number;
}

/** Validations so far, by outcome (`error`: the replica could not be restored or reached). */
export interface ValidationCounts {
  ok: number;
  mismatch: number;
  error: number;
}

export interface ValidationRun {
  replica: string;
  client: ReplicaClient;
  /** The replica's age keys: its identities decrypt the restore. */
  age?: AgeOptions;
  shipper: WalShipper;
  log: Logger;
  /** Syncs the replica and returns its position after. */
  syncedPosition(): Promise<Pos | undefined>;
}

export async function validateReplica(v: ValidationRun): Promise<ValidationResult> {
  const started = monotonicMs();
  const { replica, shipper, log } = v;
  const dir = shipper.meta.validationDir(replica);
  try {
    const { pos, digest: expected } = await shipper.digestAtPosition();
    // The pinned position is in the shadow WAL: a sync uploads at least up to it.
    const have = await v.syncedPosition();
    if (!have || have.generation !== pos.generation || comparePos(have, pos) < 0) {
      throw new ReplicateError('IO', `replica ${replica}: at ${formatPos(have)} after a sync, wanted ${formatPos(pos)}`);
    }
    await rm(dir, { recursive: true, force: true });
    // A restore of the database: the directory takes the database's mode and owner, as the meta directory.
    await shipper.meta.ensureDir(dir);
    const named = { name: replica, client: v.client, age: v.age };
    const plan = planRestore(await listGeneration(named, pos.generation), { index: pos.index, offset: pos.offset });
    const output = join(dir, 'restored.db');
    await executeRestore(named, plan, { outputPath: output, integrityCheck: 'none', parallelism: 4, restoreMarker: false });
    const actual = await digestDatabaseFile(output);
    const ok = actual.sha256 === expected.sha256 && actual.pageCount === expected.pageCount && actual.pageSize === expected.pageSize;
    const result: ValidationResult = {
      status: ok ? 'ok' : 'mismatch',
      position: pos,
      expected,
      actual,
      elapsedMs: Math.round(monotonicMs() - started),
    };
    const fields = {
      replica,
      position: formatPos(pos),
      expected: expected.sha256.slice(0, 16),
      actual: actual.sha256.slice(0, 16),
      elapsed: `${result.elapsedMs}ms`,
    };
    if (ok) log.info('validation ok', fields);
    else
      log.error('validation mismatch: the replica does not restore to the live database', {
        ...fields,
        expectedPages: expected.pageCount,
        actualPages: actual.pageCount,
      });
    return result;
  } catch (err) {
    throw err instanceof ReplicateError
      ? err
      : new ReplicateError('IO', `replica ${replica}: validation failed: ${describeError(err)}`, { cause: err });
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}
