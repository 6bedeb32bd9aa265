/**
 * The lease record: what the lease object of a replica holds (JSON, one format on every backend). Its
 * name and place are layout.ts's; the rules of taking and keeping it are replica-lease.ts's.
 *
 *   { "format": "stn-replicate-lease/1",
 *     "holder": { "host", "pid", "instance", "generation"?, "pidNamespace"? } | null,   (null: released)
 *     "acquiredAt", "renewedAt": ISO times (the holder's wall clock; for people, not for expiry),
 *     "ttlMs": how long the holder may go without renewing before others may take over,
 *     "releasedAt"?: ISO time of a release or of a break by hand }
 */
import { ReplicateError } from '../errors.js';

export const LEASE_FORMAT = 'stn-replicate-lease/1';

export interface LeaseHolder {
  host: string;
  pid: number;
  /** Random per replicator instance: two processes never share one. */
  instance: string;
  /** The generation the holder writes (unknown until its database is open). */
  generation?: string;
  /**
   * Linux: the holder's pid namespace (`pid:[4026531836]`), so that a pid is only judged alive or dead
   * by a process that sees the same pids (see src/cli/lease-liveness.ts).
   */
  pidNamespace?: string;
}

export interface LeaseRecord {
  holder: LeaseHolder | null;
  acquiredAt: string;
  renewedAt: string;
  ttlMs: number;
  releasedAt?: string;
}

export function encodeLeaseRecord(record: LeaseRecord): Buffer {
  return Buffer.from(`${JSON.stringify({ format: LEASE_FORMAT, ...record }, null, 2)}\n`);
}

/** Parses a stored record; a record we cannot read is an error, never "no lease" (that would let anyone in). */
export function decodeLeaseRecord(body: Buffer, where: string): LeaseRecord {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new ReplicateError('CORRUPT_OBJECT', `reading the lease at ${where}: not JSON`, { cause: err, details: { where } });
  }
  const o = v as Record<string, unknown>;
  const bad = (what: string) => new ReplicateError('CORRUPT_OBJECT', `reading the lease at ${where}: ${what}`, { details: { where } });
  if (typeof o !== 'object' || o === null) throw bad('not an object');
  if (o.format !== LEASE_FORMAT) throw bad(`unknown format ${JSON.stringify(o.format)} (want ${LEASE_FORMAT})`);
  if (typeof o.ttlMs !== 'number' || !(o.ttlMs > 0)) throw bad('ttlMs is not a positive number');
  if (typeof o.acquiredAt !== 'string' || typeof o.renewedAt !== 'string') throw bad('acquiredAt/renewedAt missing');
  let holder: LeaseHolder | null = null;
  if (o.holder !== null) {
    const h = o.holder as Record<string, unknown>;
    if (typeof h !== 'object' || h === null || typeof h.host !== 'string' || typeof h.pid !== 'number' || typeof h.instance !== 'string')
      throw bad('holder is malformed');
    holder = { host: h.host, pid: h.pid, instance: h.instance };
    if (typeof h.generation === 'string') holder.generation = h.generation;
    if (typeof h.pidNamespace === 'string') holder.pidNamespace = h.pidNamespace;
  }
  const record: LeaseRecord = { holder, acquiredAt: o.acquiredAt, renewedAt: o.renewedAt, ttlMs: o.ttlMs };
  if (typeof o.releasedAt === 'string') record.releasedAt = o.releasedAt;
  return record;
}

/** "host pid 123 (instance 1a2b…)": how logs and errors name a holder. */
export function describeHolder(h: LeaseHolder): string {
  return `${h.host} pid ${h.pid} (instance ${h.instance})`;
}
