/**
 * The replicate command's leases: one per replica, created from the config, and the CLI's knowledge of
 * this host's processes (the library does not look at processes), which lets a restarted replicator take
 * over at once from its own predecessor killed on this host instead of waiting out the TTL.
 */
import { readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { supportsLease, type ReplicaClient } from '../client/replica-client.js';
import { errnoCode, ReplicateError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ReplicaConfig } from '../config/types.js';
import type { LeaseHolder } from '../lease/lease-record.js';
import { ReplicaLease } from '../lease/replica-lease.js';

/** A replica's lease settings as configured (`lease:`, `lease-ttl:`; unset: leased, DEFAULT_LEASE_TTL_MS). */
export type LeaseConfig = Pick<ReplicaConfig, 'lease' | 'leaseTtlMs'>;

/** Linux: this process's pid namespace, e.g. `pid:[4026531836]`; undefined elsewhere. */
export function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

/**
 * Whether `holder` is known dead: it ran on this host, in our pid namespace (so its pid means the same
 * process to us), and that pid is free — or is our own pid, which no other live process can have. A pid
 * reused by an unrelated process reads as alive: we then wait for the TTL, the safe direction.
 */
export function holderGoneOnThisHost(holder: LeaseHolder, ns: string | undefined): boolean {
  if (holder.host !== hostname() || ns === undefined || holder.pidNamespace !== ns) return false;
  if (holder.pid === process.pid) return true;
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (err) {
    return errnoCode(err) === 'ESRCH';
  }
}

/**
 * The lease for one replica, or undefined to replicate it unleased when the config says `lease: false`.
 * A client without the lease primitives is LEASE_UNSUPPORTED; a store that does not enforce conditional
 * writes is found out by the lease's start-up probe (ReplicaLease.tryAcquire), with the same code.
 */
export function leaseFor(replica: string, client: ReplicaClient, cfg: LeaseConfig, log: Logger): ReplicaLease | undefined {
  if (cfg.lease === false) {
    log.warn(
      'replicating without a lease (lease: false): another instance writing to this replica would interleave its history with ours',
      { replica, location: client.location },
    );
    return undefined;
  }
  if (!supportsLease(client)) {
    throw new ReplicateError(
      'LEASE_UNSUPPORTED',
      `replica ${replica} (${client.type}: ${client.location}) has no atomic lease: another instance could write to it at the same time; set lease: false on it to replicate unleased anyway`,
      {
        details: { replica, type: client.type },
      },
    );
  }
  const ns = pidNamespace();
  return new ReplicaLease({
    client,
    replica,
    ttlMs: cfg.leaseTtlMs,
    logger: log,
    identity: ns !== undefined ? { pidNamespace: ns } : {},
    holderGone: (h) => holderGoneOnThisHost(h, ns),
  });
}
