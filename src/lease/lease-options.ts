/**
 * What a ReplicaLease is given: its options and their limits (the TTL's default and minimum live with
 * every other default, in src/config/defaults.ts). Separate from the lease itself so that the library's
 * exports can name them without the lease's code.
 */
import type { ReplicaClient } from '../client/replica-client.js';
import type { Logger } from '../logger.js';
import type { LeaseHolder } from './lease-record.js';

/** Longest wait between two looks while the store fails (the wait doubles from pollMs up to this). */
export const LEASE_RETRY_CAP_MS = 5_000;

/**
 * How long a look at the lease already in flight when a stop is asked for may still run before it is
 * abandoned. A stop must not throw away an answer the store is about to give: a replicator restarted
 * after a crash and stopped during its first look would otherwise exit without the final sync that
 * ships what the application committed since the crash. It must not hang on a store that never answers
 * either; 5 s is well inside what a process manager waits after SIGTERM (10 s for docker, 30 s on
 * Kubernetes).
 */
export const LEASE_STOP_GRACE_MS = 5_000;

export interface ReplicaLeaseOptions {
  client: ReplicaClient;
  /** The replica's name, for logs. */
  replica: string;
  ttlMs?: number;
  /** Who we are; host, pid and a random instance id by default. */
  identity?: Partial<Omit<LeaseHolder, 'generation'>>;
  logger?: Logger;
  /**
   * Whether a holder is known to be gone without waiting for its TTL (the CLI: a dead process on this
   * host, see src/cli/lease-liveness.ts). Only ever asked about other instances.
   */
  holderGone?: (holder: LeaseHolder) => boolean;
  /** Wall clock for the record's times (people read them; expiry never does). */
  now?: () => number;
  /** How often a waiter looks at the lease (default: TTL/4, at most 500 ms). */
  pollMs?: number;
  /** How long a look in flight at a stop may still run (default LEASE_STOP_GRACE_MS). */
  stopGraceMs?: number;
}
