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
import { listGeneration, type ReplicaSource } from './listing.js';
import { executeRestore } from './restore.js';
import { planRestore, type RestorePlan } from './restore-plan.js';
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
  /** Where a snapshot this process wrote at `index` of `generation` was taken (undefined: none written). */
  snapshotTakenAt(generation: string, index: number): Pos | undefined;
}

/** Pins before giving up when each pin is overtaken by a snapshot of its own index (see below). */
const PIN_ATTEMPTS = 3;

export async function validateReplica(v: ValidationRun): Promise<ValidationResult> {
  const started = monotonicMs();
  const { replica, shipper, log } = v;
  const dir = shipper.meta.validationDir(replica);
  try {
    const named = { name: replica, client: v.client, age: v.age };
    const { pos, expected, plan } = await pinRestorable(v, named);
    await rm(dir, { recursive: true, force: true });
    // A restore of the database: the directory takes the database's mode and owner, as the meta directory.
    await shipper.meta.ensureDir(dir);
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

/**
 * Pins the live database, syncs the replica past the pin and plans its restore to exactly there. A
 * snapshot holds the database at the position it was taken, later than the start of its index: when the
 * replica's snapshot for the pinned index was taken after the pin (a generation's first snapshot, taken
 * by the replica's first sync; or a scheduled one), no restore can stop at the pin, and comparing would
 * report a mismatch the replica does not have. Pins again then: the next pin is past that snapshot.
 */
async function pinRestorable(v: ValidationRun, named: ReplicaSource): Promise<{ pos: Pos; expected: DatabaseDigest; plan: RestorePlan }> {
  for (let attempt = 1; ; attempt++) {
    const { pos, digest: expected } = await v.shipper.digestAtPosition();
    // The pinned position is in the shadow WAL: a sync uploads at least up to it.
    const have = await v.syncedPosition();
    if (!have || have.generation !== pos.generation || comparePos(have, pos) < 0) {
      throw new ReplicateError('IO', `replica ${v.replica}: at ${formatPos(have)} after a sync, wanted ${formatPos(pos)}`);
    }
    const plan = planRestore(await listGeneration(named, pos.generation), { index: pos.index, offset: pos.offset });
    const taken = v.snapshotTakenAt(pos.generation, plan.snapshot.index);
    if (!taken || comparePos(taken, pos) <= 0) return { pos, expected, plan };
    v.log.debug('validation pins again: the replica took its snapshot after the pin', {
      replica: v.replica,
      position: formatPos(pos),
      snapshot: formatPos(taken),
    });
    if (attempt >= PIN_ATTEMPTS)
      throw new ReplicateError(
        'IO',
        `replica ${v.replica}: ${PIN_ATTEMPTS} pins in a row were overtaken by a snapshot of their own index (last at ${formatPos(taken)}); validated next time`,
      );
  }
}
