/**
 * The messages between an embedding application's thread (WorkerReplication) and the replication
 * worker thread (replication-worker.ts), and what crosses with them: errors as plain data rebuilt on the
 * other side with the same class, `code`, message and details, and the state the main thread answers
 * `pos()` and friends from.
 */
import type { SnapshotInfo } from '../client/replica-client.js';
import { ERROR_CODES, NotFoundError, ReplicateError, type ErrorCode } from '../errors.js';
import type { LogFields } from '../logger.js';
import type { Pos } from '../pos.js';
import type { ReplicaSpec, ReplicationOptions } from '../replication.js';
import type { RetentionResult, ValidationCounts, ValidationResult } from '../replica/replica.js';
import type { ShadowWalUsage } from '../shipper/shadow-limit.js';
import type { ClientDescription } from './client-transfer.js';
import type { OperationCounts } from '../client/replica-client.js';
import type { ReplicationStatus } from '../replication-status.js';

/** The options of startReplication that are plain data (they cross the thread boundary as they are). */
type PlainOptions = Pick<
  ReplicationOptions,
  | 'dbPath'
  | 'metaPath'
  | 'monitorIntervalMs'
  | 'checkpointIntervalMs'
  | 'minCheckpointPageCount'
  | 'maxCheckpointPageCount'
  | 'maxShadowWalBytes'
  | 'maxShadowWalFileBytes'
  | 'continueAfterRestore'
  | 'waitForDatabase'
>;

/** What `workerData` holds: the options of startReplication that can cross a thread boundary. */
export interface WorkerInit extends PlainOptions {
  aborted: boolean;
  /** Whether log lines are wanted at all (no logger given: none are sent). */
  log: boolean;
  /** A ReplicaSpec whose client is described; its age identities are secrets: held in memory, never logged. */
  replicas: (Omit<ReplicaSpec, 'name' | 'client' | 'lease'> & { name: string; client: ClientDescription })[];
}

export interface ReplicaState {
  pos: Pos | undefined;
  error: SerializedError | undefined;
  validations: ValidationCounts;
  requestCounts: OperationCounts;
}

export interface ReplicationState {
  shipper: { pos: Pos | undefined; opened: boolean; pageSize: number | undefined; usage: ShadowWalUsage; restoredFrom: Pos | undefined };
  replicas: ReplicaState[];
}

/** Settings of each replica as the worker resolved them (defaults applied), sent once at start. */
export interface ReplicaSettings {
  snapshotIntervalMs: number;
  retentionMs: number;
  retentionCheckIntervalMs: number;
  validationIntervalMs: number;
}

export type CallMethod =
  'sync' | 'close' | 'shipperSync' | 'durablePos' | 'replicaSync' | 'snapshot' | 'enforceRetention' | 'validate' | 'status';

export type CallResult = void | Pos | undefined | SnapshotInfo | RetentionResult | ValidationResult | ReplicationStatus;

export type ToWorker = { t: 'call'; id: number; method: CallMethod; replica?: number } | { t: 'abort' };

export type FromWorker =
  | { t: 'started'; state: ReplicationState; settings: ReplicaSettings[] }
  | { t: 'startFailed'; error: SerializedError }
  | { t: 'reply'; id: number; ok: true; value: CallResult; state: ReplicationState }
  | { t: 'reply'; id: number; ok: false; error: SerializedError; state: ReplicationState }
  | { t: 'event'; name: string; payload: Record<string, unknown>; state: ReplicationState }
  | { t: 'state'; state: ReplicationState }
  | { t: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; msg: string; fields?: LogFields };

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  details?: Record<string, unknown>;
  cause?: SerializedError;
}

/** An error as plain data (a cause chain of at most a few links; non-Error values as their text). */
export function serializeError(err: unknown, depth = 0): SerializedError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const out: SerializedError = { name: err.name, message: err.message };
  if (err.stack !== undefined) out.stack = err.stack;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') out.code = code;
  if (err instanceof ReplicateError) out.details = cloneable(err.details) as Record<string, unknown>;
  if (err.cause !== undefined && depth < 4) out.cause = serializeError(err.cause, depth + 1);
  return out;
}

/**
 * The error a serialized one stands for: a ReplicateError (or NotFoundError) with the same code, message
 * and details for the library's own errors, else an Error with the same name, message and `code` (an
 * errno code such as EACCES). The stack is the worker's, where it was thrown.
 */
export function rebuildError(e: SerializedError): Error {
  const cause = e.cause ? rebuildError(e.cause) : undefined;
  const opts = { ...(cause ? { cause } : {}), details: e.details ?? {} };
  let err: Error;
  if (e.name === 'NotFoundError') err = new NotFoundError(e.message, opts);
  else if (e.code !== undefined && (ERROR_CODES as readonly string[]).includes(e.code) && e.name === 'ReplicateError')
    err = new ReplicateError(e.code as ErrorCode, e.message, opts);
  else {
    err = new Error(e.message, cause ? { cause } : undefined);
    err.name = e.name;
    if (e.code !== undefined) Object.assign(err, { code: e.code });
  }
  if (e.stack !== undefined) err.stack = e.stack;
  return err;
}

/**
 * `value` if structured clone takes it, else a copy with what it refuses (functions, symbols, class
 * instances holding handles) turned into text — log fields and error details are for reading.
 */
export function cloneable(value: unknown): unknown {
  try {
    return structuredClone(value);
  } catch {
    if (value === null || typeof value !== 'object')
      return typeof value === 'function' || typeof value === 'symbol' ? String(value) : value;
    if (value instanceof Error) return value.message;
    if (Array.isArray(value)) return value.map((v) => cloneable(v));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, cloneable(v)]));
  }
}
