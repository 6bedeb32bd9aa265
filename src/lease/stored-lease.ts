/**
 * The lease as stored, read and broken from outside: `stn-replicate lease` shows it and breaks it by hand,
 * without holding it. Separate from ReplicaLease, which holds a lease and keeps it.
 */
import type { LeaseCapableClient } from '../client/replica-client.js';
import { NotFoundError, ReplicateError } from '../errors.js';
import { decodeLeaseRecord, encodeLeaseRecord, type LeaseRecord } from './lease-record.js';

/** The lease as stored, read back. */
export interface LeaseState {
  record: LeaseRecord;
  version: string;
}

/** The lease of a replica as stored (undefined: none). */
export async function readLease(client: LeaseCapableClient, signal?: AbortSignal): Promise<LeaseState | undefined> {
  const stored = await client.readLease(signal ? { signal } : undefined);
  if (!stored) return undefined;
  return { record: decodeLeaseRecord(stored.body, client.location), version: stored.version };
}

/**
 * Breaks a lease by hand (`stn-replicate lease -break`): writes a released record, only if the lease
 * is still held by `instance` (so a lease that moved on meanwhile is not broken by mistake).
 */
export async function breakLease(client: LeaseCapableClient, instance: string, now = Date.now()): Promise<LeaseState> {
  const current = await readLease(client);
  const holder = current?.record.holder;
  if (!current || !holder) throw new NotFoundError(`breaking the lease of ${client.location}: nobody holds it`);
  if (holder.instance !== instance) {
    throw new ReplicateError(
      'LEASE_HELD',
      `breaking the lease of ${client.location}: it is held by instance ${holder.instance}, not ${instance}`,
      { details: { holder } },
    );
  }
  const at = new Date(now).toISOString();
  const body = encodeLeaseRecord({
    holder: null,
    acquiredAt: current.record.acquiredAt,
    renewedAt: current.record.renewedAt,
    releasedAt: at,
    ttlMs: current.record.ttlMs,
  });
  const version = await client.writeLease(body, current.version);
  if (version === undefined)
    throw new ReplicateError('LEASE_HELD', `breaking the lease of ${client.location}: it changed meanwhile; look again`);
  return current;
}
