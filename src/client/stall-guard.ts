/**
 * Abandons a cloud request that stops making progress. Some SDKs have no client-side timeout that
 * covers a connection which accepts a request and then never answers (the Azure SDK's "try timeout" is
 * only a server-side hint), so an upload could hang forever and the replica would silently stop.
 *
 * The rule is "no progress for `idleMs`", not "took longer than N": a 1 GB snapshot on a slow link is
 * fine as long as bytes keep moving. Callers call `touch()` whenever something moves (a page listed, a
 * block uploaded, a chunk read).
 */
import { pipeline, Transform, type Readable } from 'node:stream';
import { ReplicateError } from '../errors.js';

export class StallGuard {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private readonly onOuterAbort: (() => void) | undefined;
  /** True once the guard gave up on the operation (as opposed to the caller aborting it). */
  stalled = false;

  constructor(
    private readonly idleMs: number,
    private readonly outer?: AbortSignal,
  ) {
    if (outer?.aborted) this.controller.abort(outer.reason);
    else if (outer) {
      this.onOuterAbort = () => this.controller.abort(outer.reason);
      outer.addEventListener('abort', this.onOuterAbort, { once: true });
    }
    this.touch();
  }

  /** The signal to hand to the SDK. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.stalled = true;
      this.controller.abort(new ReplicateError('IO', `no progress for ${this.idleMs} ms`));
    }, this.idleMs);
    this.timer.unref();
  }

  done(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.onOuterAbort) this.outer?.removeEventListener('abort', this.onOuterAbort);
  }
}

/**
 * Runs an idempotent operation under a StallGuard, trying again (up to `tries` times) when it stalled.
 * Any other failure, and the caller's own abort, is passed through at once: the SDK has already retried
 * what it considers transient.
 */
export async function retryStalled<T>(
  idleMs: number,
  tries: number,
  outer: AbortSignal | undefined,
  op: (guard: StallGuard) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const guard = new StallGuard(idleMs, outer);
    try {
      return await op(guard);
    } catch (err) {
      if (!guard.stalled || attempt >= tries) throw guard.stalled ? new StalledError(idleMs, attempt, err) : err;
    } finally {
      guard.done();
    }
  }
}

/** What an operation that stalled on every try fails with (wrapped into the backend's error). */
export class StalledError extends Error {
  constructor(idleMs: number, tries: number, cause: unknown) {
    super(
      `no progress for ${idleMs} ms (${tries} ${tries === 1 ? 'try' : 'tries'}); the store accepted the connection but stopped answering`,
      { cause },
    );
    this.name = 'StalledError';
  }
}

/**
 * Passes a response body through, failing it with `onStall(err)` when no bytes arrive for `idleMs` (or
 * with the caller's reason when `outer` aborts). The body is read later by the caller, so the guard
 * lives as long as the stream, not the request.
 */
export function guardBody(body: Readable, idleMs: number, outer: AbortSignal | undefined, onStall: (err: unknown) => Error): Readable {
  const guard = new StallGuard(idleMs, outer);
  const out = new Transform({
    transform(chunk, _enc, cb) {
      guard.touch();
      cb(null, chunk);
    },
  });
  pipeline(body, out, () => guard.done());
  guard.signal.addEventListener(
    'abort',
    () => out.destroy(onStall(guard.stalled ? new StalledError(idleMs, 1, guard.signal.reason) : guard.signal.reason)),
    { once: true },
  );
  return out;
}
