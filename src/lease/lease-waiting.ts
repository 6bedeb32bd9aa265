/**
 * Acquiring a replica's lease by waiting for it: ReplicaLease.tryAcquire tried every pollMs until the
 * lease is ours, who holds it meanwhile logged once per holder, store errors retried with backoff once
 * the lease could be read at all, and a stop honoured between tries (a try in flight gets a grace period
 * to finish). Separate from replica-lease.ts, which holds one try and everything about holding the lease
 * (renewal, the deadline, release, loss).
 */
import { abortError, describeError, errnoCode, isTransientError, ReplicateError, type ErrorCode } from '../errors.js';
import { httpStatusOf } from '../client/cloud-error.js';
import { monotonicMs } from '../internal/clock.js';
import { abortableSleep } from '../internal/abortable-sleep.js';
import type { Logger } from '../logger.js';
import { LEASE_RETRY_CAP_MS } from './lease-options.js';
import { describeHolder } from './lease-record.js';
import type { ReplicaLease } from './replica-lease.js';
import type { LeaseState } from './stored-lease.js';

/**
 * Waits until the lease is ours, logging who holds it (once per holder). Throws ABORTED on `signal`
 * (between tries; a try in flight first gets `stopGraceMs` to finish, and a lease it finds free is taken).
 * A lease that cannot be read at the first look because the store refuses (access denied, no such
 * bucket, a path through a file, no conditional writes) is an error at once, and one whose store keeps
 * failing (5xx, dropped or refused connections, timeouts) is an error after `firstLookMs`: a
 * misconfigured or unreachable replica must not leave a replicator waiting silently, but a restart
 * during a short outage must not end replication either. Once the lease could be read, store errors
 * are retried for as long as it takes.
 */
export async function waitForLease(
  lease: ReplicaLease,
  timing: { pollMs: number; stopGraceMs: number; firstLookMs: number },
  log: Logger,
  signal?: AbortSignal,
): Promise<void> {
  const { pollMs, stopGraceMs, firstLookMs } = timing;
  const where = { replica: lease.replica, location: lease.client.location };
  const started = monotonicMs();
  let reported: string | undefined;
  let failing: string | undefined;
  let lastError: unknown;
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
        ...where,
        grace: `${stopGraceMs}ms`,
      });
  };
  const failure = (code: ErrorCode, why: string, cause: unknown) =>
    new ReplicateError(code, `replica ${lease.replica}: taking the lease at ${lease.client.location}: ${why}`, { cause, details: where });
  // A stop: a clean end of waiting once the lease could be read; before that, nothing is known about the
  // replica, which is not a clean stop.
  const stopped = (how: string, cause: unknown) =>
    lease.looked ? abortError(signal) : failure('ABORTED', `stopped by a signal${how}`, cause);
  // A stop between two looks (before the lease could be read, only ever after a failed one).
  const between = () => stopped(` while the store was failing (${describeError(lastError)})`, lastError);
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
        if (tries.signal.aborted) throw stopped(`, and the store did not answer within ${stopGraceMs}ms of it`, err);
        if (!lease.looked) {
          const elapsed = monotonicMs() - started;
          if (!isTransientError(err) || refusedForGood(err) || elapsed >= firstLookMs) {
            const retried = elapsed >= firstLookMs ? ` (the store kept failing for ${Math.round(elapsed)}ms)` : '';
            throw failure(err instanceof ReplicateError ? err.code : 'IO', `${describeError(err)}${retried}`, err);
          }
        } else if (err instanceof ReplicateError && !isTransientError(err)) throw err;
        failed = true;
        lastError = err;
        // Once per distinct error: the store may stay down for long, and nothing is written meanwhile.
        if (failing !== describeError(err)) {
          failing = describeError(err);
          log.warn('replica lease cannot be read or written; retrying (nothing is written to the replica meanwhile)', {
            ...where,
            error: failing,
            ...(lease.looked ? {} : { until: `${firstLookMs}ms without an answer, then an error` }),
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
          ...where,
          holder: describeHolder(holder),
          ...(holder.generation !== undefined ? { generation: holder.generation } : {}),
          since: current.record.acquiredAt,
          renewed: current.record.renewedAt,
          ttl: `${current.record.ttlMs}ms`,
        });
      }
      if (signal?.aborted) throw between();
      await abortableSleep(failed ? errorWait : pollMs, signal);
      if (signal?.aborted) throw between();
      errorWait = failed ? Math.min(LEASE_RETRY_CAP_MS, errorWait * 2) : pollMs;
    }
  } finally {
    clearTimeout(grace);
    signal?.removeEventListener('abort', onStop);
  }
}

/**
 * Whether the store refused in a way no retry mends: an HTTP 4xx other than 408 (timeout) and 429 (slow
 * down), from any of the SDKs (their errors carry the status in different fields), or a file replica's
 * path that runs through a file. Looked for along the chain of causes.
 */
function refusedForGood(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; typeof e === 'object' && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const status = httpStatusOf(e);
    if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) return true;
    if (errnoCode(e) === 'ENOTDIR') return true;
  }
  return false;
}
