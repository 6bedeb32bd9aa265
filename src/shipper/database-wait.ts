/**
 * Waiting for the database at start-up: it may not exist yet (on the first boot the application creates
 * it, and `replicate -exec` starts that application), or the application may hold a lock for longer
 * than our busy timeout (a large import at boot). Both are waited for with backoff and one log line per
 * state, as Litestream does; any other failure to open is the caller's.
 */
import { stat } from 'node:fs/promises';
import { errnoCode } from '../errors.js';
import { abortableSleep } from '../internal/abortable-sleep.js';
import type { Logger } from '../logger.js';
import { isBusy } from './db-connection.js';

export interface WaitForDatabase {
  dbPath: string;
  log: Logger;
  signal?: AbortSignal;
  /** What was last said (shared by a foreground and a background wait, so it is said once). */
  said: { what: string | undefined };
  /** Asked after each unsuccessful attempt: false stops waiting (resolves false). */
  keepWaiting(): boolean;
  closed(): boolean;
  maxDelayMs: number;
  /** Opens the database; a busy error means "locked: wait". */
  open(): Promise<void>;
}

/** Resolves true once opened; false when told not to wait, or on close or abort. */
export async function openWhenReady(w: WaitForDatabase): Promise<boolean> {
  let delay = 100;
  for (;;) {
    if (w.closed() || w.signal?.aborted) return false;
    const exists = await stat(w.dbPath).then(
      () => true,
      (err: unknown) => {
        if (errnoCode(err) === 'ENOENT') return false;
        throw err;
      },
    );
    let waiting: string;
    if (!exists) {
      waiting = 'database does not exist yet; waiting for it';
    } else {
      try {
        await w.open();
        if (w.said.what) w.log.info('database opened', { db: w.dbPath });
        return true;
      } catch (err) {
        if (!isBusy(err)) throw err;
        waiting = 'database is locked by another connection; waiting';
      }
    }
    if (waiting !== w.said.what) w.log.warn(waiting, { db: w.dbPath });
    w.said.what = waiting;
    if (!w.keepWaiting()) return false;
    await abortableSleep(delay, w.signal);
    delay = Math.min(delay * 2, w.maxDelayMs);
  }
}
