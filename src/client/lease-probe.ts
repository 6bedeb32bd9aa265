/**
 * The start-up probe of an object store's conditional writes, run once per replica before its lease is
 * first taken (ReplicaLease). The lease is only as good as the store's compare-and-swap, and a store can
 * fail it in three ways: refuse conditional writes outright (501 NotImplemented: older S3-compatible
 * stores, Backblaze B2's S3 API), silently ignore the condition and overwrite (some S3-compatible stores
 * and gateways, and the local emulators without the test harness's precondition layer), or enforce it
 * only without concurrency (not detectable by a sequential probe; see docs/lease.md). The probe catches
 * the first two, on a throwaway object of its own beside the lease object — never on the lease object
 * itself, which a store that ignores conditions would clobber:
 *
 *   1. create-if-absent                 must succeed (a fresh random key)
 *   2. create-if-absent again           must fail: success means "create-if-absent" is ignored
 *   3. replace-if-version (bogus)       must fail: success means "replace-if-version" is ignored
 *   4. replace-if-version (from 1)      must succeed: a store that refuses every conditional replace
 *                                       would leave a holder unable to renew
 *   5. delete the probe object          best effort, unconditional
 *
 * The probe object lives under `<root>/lease/`, outside `generations/`, so Litestream never lists it.
 */
import { randomBytes } from 'node:crypto';
import { abortError, describeError, ReplicateError } from '../errors.js';
import { abortableSleep } from '../internal/abortable-sleep.js';

export interface ConditionalWrites {
  /** Backend type, for messages. */
  type: string;
  /** Where the replica lives, for messages. */
  location: string;
  /** The probe object's key for a random id (ReplicaLayout.leaseProbeKey). */
  keyFor(id: string): string;
  /** A version the store can never have given out (for step 3). */
  bogusVersion: string;
  /** How this store's conditions are called, for messages: create-if-absent, replace-if-version. */
  createCondition: string;
  replaceCondition: string;
  /** The store's conditional write: the new version, or undefined when the condition failed. */
  put(key: string, body: Buffer, expected: string | undefined, signal?: AbortSignal): Promise<string | undefined>;
  /** Deletes the probe object (unconditionally). */
  remove(key: string, signal?: AbortSignal): Promise<void>;
}

/** Attempts of the whole probe (a fresh key each) when a request fails for a reason other than the verdict. */
const PROBE_ATTEMPTS = 3;

/**
 * Throws LEASE_UNSUPPORTED (naming what the store did, and `lease: false`) when the store does not
 * enforce conditional writes; passes store errors through (IO) after a few attempts.
 */
export async function probeConditionalWrites(w: ConditionalWrites, signal?: AbortSignal): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await probeOnce(w, signal);
      return;
    } catch (err) {
      if (signal?.aborted) throw abortError(signal);
      // The verdict is final; an outage (a reset, a lost reply: conditional writes are not retried by
      // the SDKs here, see the clients) is tried again with a fresh key, a little later.
      if (err instanceof ReplicateError && err.code !== 'IO') throw err;
      if (attempt >= PROBE_ATTEMPTS) {
        throw new ReplicateError('IO', `the start-up probe of conditional writes (${PROBE_ATTEMPTS} tries): ${describeError(err)}`, {
          cause: err,
          details: { type: w.type, location: w.location },
        });
      }
      await abortableSleep(250 * attempt, signal);
    }
  }
}

async function probeOnce(w: ConditionalWrites, signal: AbortSignal | undefined): Promise<void> {
  const key = w.keyFor(randomBytes(8).toString('hex'));
  const unsupported = (what: string) =>
    new ReplicateError(
      'LEASE_UNSUPPORTED',
      `the store does not enforce conditional writes (${what}), so two replicators could both believe they hold the lease of ${w.location}; ` +
        'set `lease: false` on this replica to replicate it unleased (then make sure only one replicator ever writes there), or use a store that enforces them (see docs/lease.md)',
      { details: { type: w.type, location: w.location, key } },
    );
  let passed = false;
  try {
    const v1 = await w.put(key, Buffer.from('stn-replicate lease probe 1\n'), undefined, signal);
    if (v1 === undefined) throw unsupported(`a ${w.createCondition} write of a new object ${key} was refused as if it existed`);
    if ((await w.put(key, Buffer.from('stn-replicate lease probe 2\n'), undefined, signal)) !== undefined) {
      throw unsupported(`a second ${w.createCondition} write of ${key} succeeded: the store ignores the condition`);
    }
    if ((await w.put(key, Buffer.from('stn-replicate lease probe 3\n'), w.bogusVersion, signal)) !== undefined) {
      throw unsupported(`a ${w.replaceCondition} write of ${key} with a version it never had succeeded: the store ignores the condition`);
    }
    if ((await w.put(key, Buffer.from('stn-replicate lease probe 4\n'), v1, signal)) === undefined) {
      throw unsupported(`a ${w.replaceCondition} write of ${key} with its current version was refused`);
    }
    passed = true;
  } finally {
    // Best effort (the SDKs retry deletes): a probe object left behind is a few bytes that nothing ever
    // reads. Also after a failed step 1, whose request may have reached the store (a lost reply) — but
    // then not waited for: a store that failed the probe may not answer the delete either.
    const removing = signal?.aborted ? Promise.resolve() : w.remove(key, signal).catch(() => undefined);
    if (passed) await removing;
  }
}
