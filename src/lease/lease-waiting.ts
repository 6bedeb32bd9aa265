/**
 * Acquiring a replica's lease by waiting for it: ReplicaLease.tryAcquire tried every pollMs until the
 * lease is ours, who holds it meanwhile logged once per holder, store errors retried with backoff once
 * the lease could be read at all, and a stop honoured between tries. Separate from replica-lease.ts,
 * which holds one try and everything about holding the lease (renewal, the deadline, release, loss).
 */
import { abortError, describeError, isTransientError, ReplicateError } from '../errors.js';
import { abortableSleep } from '../internal/abortable-sleep.js';
import type { Logger } from '../logger.js';
import { LEASE_RETRY_CAP_MS } from './lease-options.js';
import { describeHolder } from './lease-record.js';
import type { ReplicaLease } from './replica-lease.js';
import type { LeaseState } from './stored-lease.js';

/**
 * Waits until the lease is ours, logging who holds it (once per holder). Throws ABORTED on `signal`.
 * A lease that cannot even be read at the first look is an error (a misconfigured or unreachable
 * replica must not leave a replicator waiting silently); once it could be read, store errors (a
 * write refused during an outage, a dropped connection) are retried.
 */
export async function waitForLease(lease: ReplicaLease, pollMs: number, log: Logger, signal?: AbortSignal): Promise<void> {
  let reported: string | undefined;
  let failing: string | undefined;
  // While the store fails, the looks back off (doubling up to LEASE_RETRY_CAP_MS); once it answers,
  // they are every pollMs again, so a release is seen within pollMs.
  let errorWait = pollMs;
  // No abort check before the first try: a free lease is taken even when a stop is already asked for
  // (a signal held from start-up), so that the final sync can still run; only waiting ends — and a
  // try that hangs on a store that does not answer, when the stop comes while it runs.
  const tries = signal?.aborted ? undefined : signal;
  for (;;) {
    let failed = false;
    let current: LeaseState | undefined;
    try {
      current = await lease.tryAcquire(tries);
      if (current === undefined) return;
    } catch (err) {
      if (tries?.aborted) {
        if (lease.looked) throw abortError(signal);
        throw new ReplicateError(
          'ABORTED',
          `replica ${lease.replica}: taking the lease at ${lease.client.location}: interrupted by a signal before the store answered`,
          { cause: err, details: { replica: lease.replica, location: lease.client.location } },
        );
      }
      if (!lease.looked) {
        const code = err instanceof ReplicateError ? err.code : 'IO';
        throw new ReplicateError(code, `replica ${lease.replica}: taking the lease at ${lease.client.location}: ${describeError(err)}`, {
          cause: err,
          details: { replica: lease.replica, location: lease.client.location },
        });
      }
      if (err instanceof ReplicateError && !isTransientError(err)) throw err;
      failed = true;
      // Once per distinct error: the store may stay down for long, and nothing is written meanwhile.
      if (failing !== describeError(err)) {
        failing = describeError(err);
        log.warn('replica lease cannot be read or written; retrying (nothing is written to the replica meanwhile)', {
          replica: lease.replica,
          location: lease.client.location,
          error: failing,
        });
      }
    }
    const holder = current?.record.holder;
    // (Our own instance as the holder is an acquisition whose reply was lost: taken at the next look.)
    if (current && holder && reported !== holder.instance && holder.instance !== lease.identity.instance) {
      reported = holder.instance;
      log.warn('replica lease held by another instance; waiting for it to be released or to expire before writing', {
        replica: lease.replica,
        location: lease.client.location,
        holder: describeHolder(holder),
        ...(holder.generation !== undefined ? { generation: holder.generation } : {}),
        since: current.record.acquiredAt,
        renewed: current.record.renewedAt,
        ttl: `${current.record.ttlMs}ms`,
      });
    }
    if (signal?.aborted) throw abortError(signal);
    await abortableSleep(failed ? errorWait : pollMs, signal);
    errorWait = failed ? Math.min(LEASE_RETRY_CAP_MS, errorWait * 2) : pollMs;
  }
}
