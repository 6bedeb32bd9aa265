/** A Replica's options (one destination of one database) and the events it emits. */
import type { ReplicaClient, SnapshotInfo, WalSegmentInfo } from '../client/replica-client.js';
import type { ReplicateError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ReplicaLease } from '../lease/replica-lease.js';
import type { AgeOptions } from './object-codec.js';
import type { RetentionResult } from './retention-run.js';
import type { ValidationResult } from './validate.js';

/**
 * What one running Replica is built from: a replica of the public API (ReplicaSpec in replication.ts)
 * once resolved: its name decided (unique per database), the replication's logger and clock attached.
 */
export interface ReplicaRuntimeOptions {
  name: string;
  client: ReplicaClient;
  /** Least time between two uploads under load (default 1 s); an upload after a quiet period starts at once. */
  syncIntervalMs?: number;
  /** Take a snapshot this often (Litestream's `snapshot-interval`); 0 or unset: only when a generation starts or retention needs one. */
  snapshotIntervalMs?: number;
  /** Keep snapshots created within this window (default 24 h, Litestream's); 0 disables retention. */
  retentionMs?: number;
  /** How often retention is enforced (default 1 h; never less often than `retentionMs`). */
  retentionCheckIntervalMs?: number;
  /** Restore the replica and compare it with the live database this often (Litestream's `validation-interval`); 0 or unset: never. */
  validationIntervalMs?: number;
  /**
   * The clock that object ages are judged by (ms since the epoch; default Date.now). Only ages use it —
   * waits, intervals and backoff run on a monotonic clock — so tests can replay a long history without
   * waiting for it.
   */
  now?: () => number;
  logger?: Logger;
  /**
   * The replica's lease (see src/lease/): every write checks it is held; when it is lost the replica
   * stops at once and emits 'leaseLost' and 'error'. Acquiring and releasing it is the owner's job.
   */
  lease?: ReplicaLease;
  /**
   * age encryption (Litestream's `age:`): every object written is encrypted to the recipients after LZ4
   * compression; the identities decrypt for validation and for finding where the replica ends after a
   * restart. Identities without recipients are refused (objects would be written in the clear); recipients
   * without identities replicate, with a warning (see docs/config.md).
   */
  age?: AgeOptions;
}

/** @deprecated The old name of ReplicaRuntimeOptions (it did not say how it differs from ReplicaSpec). */
export type ReplicaOptions = ReplicaRuntimeOptions;

export interface ReplicaEvents {
  /** A snapshot was written (not when one already at that index was kept). */
  snapshot: [SnapshotInfo];
  /** A WAL segment was written. */
  segment: [WalSegmentInfo];
  retention: [RetentionResult];
  validation: [ValidationResult];
  /** The lease was lost: the replica stopped writing for good ('error' follows with the same error). */
  leaseLost: [ReplicateError];
  /** A background failure (a sync, a scheduled snapshot, retention or validation); only when listened to. */
  error: [unknown];
}
