/**
 * Waiting for a shipper's monitor polls: an idle window measured in polls (each a full sync tick), not
 * in time, for tests that show that nothing happens while nobody asks.
 *
 * The poll is the shipper's durable tick (`tick(true)` of its follow loop, src/shipper/wal-follower.ts:
 * the periodic one; file-change notifications run `tick(false)`). There is no public per-tick signal, so
 * this wraps the private method; if the shipper is restructured, adapt this one place.
 */
import type { ShipperView } from '../../src/replication.js';
import type { WalFollower } from '../../src/shipper/wal-follower.js';

type Tick = (durable: boolean) => Promise<void>;

/** Resolves after the shipper's next `n` monitor polls have finished. */
export function pollsOf(shipper: ShipperView, n: number): Promise<void> {
  const target = (shipper as unknown as { follower?: { tick?: Tick } }).follower ?? {};
  const tick = target.tick;
  // A shipper in a worker thread cannot be wrapped from here: start the replication with inline: true.
  if (typeof tick !== 'function')
    throw new Error(
      'pollsOf: not an in-process WalShipper whose follower has a tick(durable) method (inline: true? else update test/helpers/shipper-polls.ts)',
    );
  return new Promise((resolve, reject) => {
    let seen = 0;
    target.tick = async function (this: WalFollower, durable: boolean) {
      try {
        await tick.call(this, durable);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
      if (durable && ++seen === n) {
        delete target.tick; // the prototype's method again
        resolve();
      }
    };
  });
}
