/**
 * Time for intervals, timeouts and backoff: monotonic, so a wall-clock step (NTP at boot, a VM resumed)
 * can neither stall a wait for as long as the step nor cut it short. Wall time (Date.now) is only for
 * what is truly wall time: object ages, timestamps in logs and names.
 */
export function monotonicNow(): number {
  return performance.now();
}
