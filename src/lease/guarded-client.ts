/**
 * The replica client as a leased replica uses it: every write or delete first checks that the lease is
 * held and inside its deadline (ReplicaLease.assertHeld), and is abandoned when the lease is lost
 * meanwhile. One wrapper, so that no write path (snapshots, WAL segments, retention, a snapshot
 * requested by the application) can forget the check. Reads and listings pass through unchanged.
 */
import type { OpOptions, ReplicaClient } from '../client/replica-client.js';
import type { ReplicaLease } from './replica-lease.js';

const WRITES = new Set<PropertyKey>(['writeSnapshot', 'writeWalSegment', 'deleteGeneration', 'deleteSnapshot', 'deleteWalSegments']);

/** The index of the `opts` argument of each write (the last one). */
const OPTS_ARG: Record<string, number> = {
  writeSnapshot: 3,
  writeWalSegment: 2,
  deleteGeneration: 1,
  deleteSnapshot: 2,
  deleteWalSegments: 1,
};

export function guardedClient(client: ReplicaClient, lease: ReplicaLease): ReplicaClient {
  return new Proxy(client, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      if (!WRITES.has(prop)) return (value as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => {
        lease.assertHeld();
        const i = OPTS_ARG[prop as string]!;
        const opts = (args[i] as OpOptions | undefined) ?? {};
        const signal = opts.signal ? AbortSignal.any([opts.signal, lease.lostSignal]) : lease.lostSignal;
        args[i] = { ...opts, signal };
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
