/**
 * Acquiring a replica's lease by waiting for it: ReplicaLease.tryAcquire tried every pollMs until the
 * lease is ours, who holds it meanwhile logged once per holder, store errors retried with backoff once
 * the lease could be read at all, and a stop honoured between tries (a try in flight gets a grace period
 * to finish). Separate from replica-lease.ts, which holds one try and everything about holding the lease
 * (renewal, the deadline, release, loss).
 */
import { abortError, describeError, isTransientError, ReplicateError } from '../errors.js';
import { abortableSleep } from '../internal/abortable-sleep.js';
import type { Logger } from '../logger.js';
import { LEASE_RETRY_CAP_MS } from './lease-options.js';
import { describeHolder } from './lease-record.js';
import type { ReplicaLease } from './replica-lease.js';
import type { LeaseState } from './stored-lease.js';

/**
 * Waits until the lease is ours, logging who holds it (once per holder). Throws ABORTED on `signal`
 * (between tries; a try in flight first gets `stopGraceMs` to finish, and a lease it finds free is taken).
 * A lease that cannot even be read at the first look is an error (a misconfigured or unreachable
 * replica must not leave a replicator waiting silently); once it could be read, store errors (a
 * write refused during an outage, a dropped connection) are retried.
 */
export async function waitForLease(
  lease: ReplicaLease,
  timing: { pollMs: number; stopGraceMs: number },
  log: Logger,
  signal?: AbortSignal,
): Promise<void> {
  const { pollMs, stopGraceMs } = timing;
  let reported: string | undefined;
  let failing: string | undefined;
  // While the store fails, the looks back off (doubling up to LEASE_RETRY_CAP_MS); once it answers,
  // they are every pollMs again, so a release is seen within pollMs.
  let errorWait = pollMs;
  // A stop ends the waiting, not a look in flight: that look gets stopGraceMs more to finish. A free
  // lease (none, released, expired, or held by a process known dead: a replicator restarted after a
  // crash) is then still taken, so that replication starts and its final sync ships what the
  // application committed meanwhile; a stop held from start-up is the same. Only a store that does not
  // answer within the grace has its look abandoned. There is no abort check before the first try.
  const tries = new AbortController();
  let inFlight = false;
  let grace: NodeJS.Timeout | undefined;
  const onStop = () => {
    grace ??= setTimeout(() => tries.abort(signal?.reason), stopGraceMs);
    if (inFlight)
      log.info('stop asked for while the replica lease is being read or taken; waiting for the store to answer', {
        replica: lease.replica,
        location: lease.client.location,
        grace: `${stopGraceMs}ms`,
      });
  };
  if (signal?.aborted) onStop();
  else signal?.addEventListener('abort', onStop, { once: true });
  try {
    for (;;) {
      let failed = false;
      let current: LeaseState | undefined;
      try {
        inFlight = true;
        current = await lease.tryAcquire(tries.signal);
        if (current === undefined) return;
      } catch (err) {
        if (tries.signal.aborted) {
          if (lease.looked) throw abortError(signal);
          throw new ReplicateError(
            'ABORTED',
            `replica ${lease.replica}: taking the lease at ${lease.client.location}: stopped by a signal, and the store did not answer within ${stopGraceMs}ms of it`,
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
      } finally {
        inFlight = false;
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
  } finally {
    clearTimeout(grace);
    signal?.removeEventListener('abort', onStop);
  }
}
