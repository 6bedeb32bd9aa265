/**
 * When the holder of a lease renews it, and one timer for every renewal due at the same instant.
 * Separate from the lease's state machine (replica-lease.ts): this is only arithmetic on the monotonic
 * clock and a shared wake-up, the same for every lease of the process.
 */
import { monotonicMs } from '../internal/clock.js';

/**
 * When a renewal `wait` after `sentAt` is made: a regular one (TTL/3) early by less than TTL/30 (1 s
 * of the default TTL), on a grid of that step shared by every lease of the process (the monotonic clock
 * is the process's), so that the leases of many replicas renew together, in one wake-up of an idle
 * process every TTL/3, instead of each in its own. Earlier never weakens the lease: its deadline counts
 * from when a renewal is sent. Once together they stay together (each next one is due TTL/3 after a
 * send that happened just past a grid point). Retries (a shorter wait) are not moved.
 */
export function renewalDue(sentAt: number, wait: number, ttlMs: number): number {
  const due = sentAt + wait;
  if (wait < ttlMs / 3) return due;
  const step = ttlMs / 30;
  return Math.max(sentAt, Math.floor(due / step) * step);
}

/** One timer per instant (monotonic ms) that sleepUntil is asked for: renewals due together wake together. */
const wakeups = new Map<number, { timer: NodeJS.Timeout; waiters: Set<() => void> }>();

/** Resolves at monotonic time `at`, or early when `signal` aborts (the caller checks it after). */
export function sleepUntil(at: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || at <= monotonicMs()) return Promise.resolve();
  return new Promise((resolve) => {
    let w = wakeups.get(at);
    if (!w) {
      const waiters = new Set<() => void>();
      const timer = setTimeout(() => {
        wakeups.delete(at);
        for (const wake of waiters) wake();
      }, at - monotonicMs());
      w = { timer, waiters };
      wakeups.set(at, w);
    }
    const group = w;
    const wake = () => {
      group.waiters.delete(wake);
      signal.removeEventListener('abort', wake);
      if (group.waiters.size === 0 && wakeups.get(at) === group) {
        clearTimeout(group.timer);
        wakeups.delete(at);
      }
      resolve();
    };
    group.waiters.add(wake);
    signal.addEventListener('abort', wake, { once: true });
  });
}
