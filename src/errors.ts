/**
 * Errors raised by the library. Every error carries a stable `code` that callers (and the CLI) can branch
 * on, a lower-case "doing what: detail" message, and the underlying `cause` when there is one.
 */

export const ERROR_CODES = [
  /** An object, file or generation that was asked for does not exist. */
  'NOT_FOUND',
  /** Bad user input: a flag, a path, a timestamp, an index. */
  'INVALID_ARGUMENT',
  /** The config file is missing, unreadable or invalid. */
  'CONFIG',
  /** A replica type we do not know (or do not support yet). */
  'UNKNOWN_REPLICA_TYPE',
  /** The replica holds no backup that matches the request. */
  'NO_BACKUPS',
  /**
   * A restore timestamp before the earliest restorable point (the oldest snapshot) of every generation
   * considered; `details.ranges` holds what can be restored. A later timestamp is not an error.
   */
  'TIMESTAMP_OUT_OF_RANGE',
  /** An object's bytes are not what they should be: LZ4 framing, content checksum, age authentication, truncation. */
  'CORRUPT_OBJECT',
  /**
   * An age-encrypted object that the replica's age identities cannot open: none configured
   * (`details.reason` "missing") or none matches the object's recipients ("no-match").
   */
  'AGE_IDENTITY',
  /** A WAL file (or WAL segment) breaks the SQLite WAL format: header, salts, checksums. */
  'INVALID_WAL',
  /** A WAL index between the snapshot and the last index has no segments. */
  'MISSING_WAL_INDEX',
  /** A WAL index does not start with a segment at offset 0. */
  'MISSING_INITIAL_SEGMENT',
  /** Two consecutive segments of one WAL index do not meet (a byte range is missing or overlaps). */
  'WAL_SEGMENT_GAP',
  /** The restore output path exists already. */
  'OUTPUT_EXISTS',
  /** The restore output cannot be written (permissions, missing parent, read-only file system). */
  'OUTPUT_NOT_WRITABLE',
  /**
   * A database that a restore was asked to replace is open in another process (a connection holds its
   * lock): stop the application (and any replicator) first.
   */
  'DATABASE_IN_USE',
  /** The restored database failed SQLite's integrity check. */
  'INTEGRITY_CHECK_FAILED',
  /**
   * A replica holds bytes of the current generation that local state does not (another replicator
   * writes to it, or a local tail was lost): a new generation was started.
   */
  'REPLICA_DIVERGED',
  /**
   * Another instance holds the replica's lease (see src/lease/): this one may not write there yet, or a
   * `lease -break` named a holder other than the one holding it.
   */
  'LEASE_HELD',
  /** This instance lost its lease (not renewed in time, or taken over): it stopped writing at once. */
  'LEASE_LOST',
  /** The replica's backend has no atomic lease primitive, and replicating unleased was not asked for. */
  'LEASE_UNSUPPORTED',
  /**
   * A server's identity could not be verified (sftp: its SSH host key is unknown, does not match the
   * configured one or known_hosts, or is revoked); `details.fingerprint` is the key it offered.
   */
  'HOST_KEY_NOT_TRUSTED',
  /** The server refused our credentials (sftp: wrong password, a key it does not accept). */
  'AUTH_FAILED',
  /** The server could not be reached: connection refused, no route, unknown host, or no answer in time. */
  'UNREACHABLE',
  /** A local or remote I/O operation failed for a reason not covered above. */
  'IO',
  /** The operation was aborted through its AbortSignal. */
  'ABORTED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ReplicateErrorOptions {
  cause?: unknown;
  /** Machine-readable context (paths, keys, positions). Never secrets. */
  details?: Record<string, unknown>;
}

export class ReplicateError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: ReplicateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ReplicateError';
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** Raised by every ReplicaClient for a missing object, whatever the backend calls it. */
export class NotFoundError extends ReplicateError {
  constructor(message: string, options: ReplicateErrorOptions = {}) {
    super('NOT_FOUND', message, options);
    this.name = 'NotFoundError';
  }
}

export function isReplicateError(err: unknown, code?: ErrorCode): err is ReplicateError {
  return err instanceof ReplicateError && (code === undefined || err.code === code);
}

/**
 * Whether trying again later could succeed: an I/O failure, or a server that could not be reached; not
 * a refused login, an untrusted host key, a missing object or bad input.
 */
export function isTransientError(err: unknown): boolean {
  return isReplicateError(err) && (err.code === 'IO' || err.code === 'UNREACHABLE');
}

export function isNotFound(err: unknown): boolean {
  return isReplicateError(err, 'NOT_FOUND');
}

/** Node's fs errors carry a string `code` such as ENOENT. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = err.code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** A short description of any thrown value, for messages that wrap a cause. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

export function abortError(signal: AbortSignal | undefined): ReplicateError {
  return new ReplicateError('ABORTED', 'operation aborted', { cause: signal?.reason });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}
