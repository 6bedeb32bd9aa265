/**
 * Background failures (a sync, an upload, a renewal) are reported as an 'error' event only when someone
 * listens: Node's EventEmitter throws an 'error' event nobody handles, and that throw would land inside
 * the loop that hit the failure (which already logs it and carries on).
 */
import type { EventEmitter } from 'node:events';

export function reportError<T>(emitter: EventEmitter, payload: T): void {
  if (emitter.listenerCount('error') > 0) emitter.emit('error', payload);
}
