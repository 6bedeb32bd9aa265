/**
 * Waiting for a shipper's monitor polls: an idle window measured in polls (each a full sync tick), not
 * in time, for tests that show that nothing happens while nobody asks.
 */
import type { WalShipper } from '../../src/shipper/wal-shipper.js';

/** Resolves after the shipper's next `n` monitor polls (its timer calls sync()) have finished. */
export function pollsOf(shipper: WalShipper, n: number): Promise<void> {
  const sync = shipper.sync.bind(shipper);
  return new Promise((resolve, reject) => {
    let seen = 0;
    shipper.sync = () => {
      const run = sync();
      run.then(
        () => {
          if (++seen === n) {
            shipper.sync = sync;
            resolve();
          }
        },
        (err: unknown) => reject(err instanceof Error ? err : new Error(String(err))),
      );
      return run;
    };
  });
}
