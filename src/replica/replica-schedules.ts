/**
 * A replica's schedules (docs/config.md, "Snapshots and retention" and "Replica validation"): snapshots
 * on a fixed rhythm (the first one timed by the age of the latest snapshot), retention every min(check
 * interval, retention), validation every interval. A failed run is logged and retried at the next one;
 * every wait ends at once when the replica stops.
 */
import { collect, type ReplicaClient, type SnapshotInfo } from '../client/replica-client.js';
import { describeError } from '../errors.js';
import type { StopSignal } from '../internal/stop-signal.js';
import type { Logger } from '../logger.js';
import { firstSnapshotDelay } from './retention.js';

export interface ScheduleHost {
  name: string;
  client: ReplicaClient;
  log: Logger;
  stop: StopSignal;
  /** Wall time, for object ages. */
  now(): number;
  /** Resolves after the replica's first successful sync (the generation is known then). */
  firstSync: Promise<void>;
  generation(): string | undefined;
  snapshot(): Promise<SnapshotInfo>;
  enforceRetention(): Promise<unknown>;
  validate(): Promise<unknown>;
  reportError(what: string, err: unknown): void;
}

export async function snapshotLoop(h: ScheduleHost, intervalMs: number): Promise<void> {
  // The generation (and so which snapshots count) is known only after the first sync.
  await Promise.race([h.firstSync, h.stop.stopped]);
  if (h.stop.isStopped) return;
  let delay = intervalMs;
  try {
    const generation = h.generation();
    if (generation !== undefined) {
      const snapshots = await collect(h.client.snapshots(generation));
      const latest = snapshots.length > 0 ? Math.max(...snapshots.map((s) => s.createdAt.getTime())) : undefined;
      delay = firstSnapshotDelay(intervalMs, h.now(), latest);
      if (delay < intervalMs)
        h.log.info('snapshot interval adjusted', {
          replica: h.name,
          previous: latest === undefined ? '' : new Date(latest).toISOString(),
          delay: `${delay}ms`,
        });
    }
  } catch (err) {
    h.log.warn('cannot list snapshots to schedule the next one; waiting a full interval', { replica: h.name, error: describeError(err) });
  }
  await every(h, delay, intervalMs, 'scheduled snapshot failed', () => h.snapshot());
}

export function retentionLoop(h: ScheduleHost, periodMs: number): Promise<void> {
  return every(h, periodMs, periodMs, 'retention failed; retrying at the next check', () => h.enforceRetention());
}

export function validationLoop(h: ScheduleHost, intervalMs: number): Promise<void> {
  return every(h, intervalMs, intervalMs, 'validation failed', () => h.validate());
}

/** Runs `fn` after `firstMs`, then every `periodMs`, until stopped. Timers are unref'd. */
async function every(h: ScheduleHost, firstMs: number, periodMs: number, failure: string, fn: () => Promise<unknown>): Promise<void> {
  let delay = firstMs;
  while (!h.stop.isStopped) {
    await h.stop.sleep(delay, true);
    if (h.stop.isStopped) break;
    delay = periodMs;
    try {
      await fn();
    } catch (err) {
      h.reportError(failure, err);
    }
  }
}
