/**
 * The clock for intervals, timeouts and backoff: monotonic, so a step of the wall clock (NTP at boot, a
 * resumed VM) neither stalls a wait for the length of the step nor cuts it short. Wall time (Date.now)
 * is only for what truly is wall time: object ages, log timestamps.
 */
import { performance } from 'node:perf_hooks';

/** Milliseconds on a monotonic clock (arbitrary origin); only differences mean anything. */
export function monotonicMs(): number {
  return performance.now();
}
