/**
 * When the shipper syncs: on file-change notifications for the database's `-wal` (coalesced to at most
 * one sync every `minGapMs`), and on a poll every `monitorIntervalMs` as a safety net. A failing sync is
 * retried with exponential backoff (notifications do not cut the wait short), and the same error is
 * logged once, then at most every `repeatLogMs`, and its end is logged too: nothing spins, nothing floods
 * the log. Times come from a monotonic clock, so a wall-clock step cannot stall or hurry it.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { monotonicMs } from '../internal/clock.js';
import { everyMs } from '../internal/shared-interval.js';

/** The first look again at a transaction in progress (see SyncSchedulerOptions.run). */
const FIRST_RECHECK_MS = 2;

/**
 * What a sync found. A transaction being written (frames of the cycle past the commit point) publishes
 * its commit in the wal-index, shared memory, which makes no file event, so the scheduler looks again
 * by itself:
 *   'in-progress'             nothing was copied: 2 ms later, then 4, 8… up to the poll's period (a
 *                             writer that died mid-commit leaves such frames for good);
 *   'in-progress-after-copy'  the sync copied, the app is busy writing: after the usual gap;
 *   'copied'                  the sync copied and nothing more was being written (see `busy`).
 */
export type SyncOutcome = void | 'copied' | 'in-progress' | 'in-progress-after-copy';

export interface SyncSchedulerOptions {
  dbPath: string;
  walPath: string;
  monitorIntervalMs: number;
  /** Least time between two notification-triggered syncs. */
  minGapMs: number;
  /** One sync; `durable`: the periodic one (it also fsyncs). See SyncOutcome. */
  run(durable: boolean): Promise<SyncOutcome>;
  onError?(err: unknown): void;
  log: Logger;
  firstBackoffMs?: number;
  maxBackoffMs?: number;
  repeatLogMs?: number;
}

export class SyncScheduler {
  private watcher: FSWatcher | undefined;
  private unsubscribePoll: (() => void) | undefined;
  /** The sync asked for and not started yet. */
  private timer: { cancel(): void } | undefined;
  private running = false;
  private pending: boolean | undefined; // undefined: nothing pending; else whether durable was asked
  private stopped = false;
  private watchUnavailable = false;
  private armError: string | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private recheckMs = 0;
  private lastRunAt = -Infinity;
  /** The sync asked for waits for the gap: the notification came sooner than `minGapMs` after the last. */
  private gapWaited = false;
  /**
   * The application writes faster than the gap: the last sync copied and had been held back by the gap.
   * Then the next sync is due after the gap anyway, and runs without the watch: arming it (an inotify
   * watch added, a notification, the watch removed, for every sync) cost ~10% of the replicator's CPU
   * under a steady write load. The first sync of the burst that finds nothing arms it and asks for one
   * more, which covers a commit made between that sync's read and the arming.
   */
  private busy = false;
  private failures = 0;
  private backoffUntil = -Infinity;
  private lastLogged: { message: string; at: number } | undefined;

  constructor(private readonly o: SyncSchedulerOptions) {}

  /** Consecutive failed syncs (0 when the last one succeeded). */
  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Whether the file watch is armed now (for tests). */
  get watching(): boolean {
    return this.watcher !== undefined;
  }

  start(): void {
    if (!this.arm()) {
      this.watchUnavailable = true;
      this.o.log.warn('file watching unavailable; polling only', { db: this.o.dbPath, error: this.armError });
    }
    if (this.o.monitorIntervalMs > 0) this.unsubscribePoll = everyMs(this.o.monitorIntervalMs, () => this.request(true));
  }

  stop(): void {
    this.stopped = true;
    this.disarm();
    this.unsubscribePoll?.();
    this.cancelScheduled();
    if (this.recheck) clearTimeout(this.recheck);
  }

  /**
   * Watches the database's directory until the next change. The first notification disarms it: an
   * application that commits without pause makes one or more notifications per commit (thousands a
   * second), and each woke the event loop for nothing once a sync was already due. The watch is armed
   * again right before that sync reads the WAL, so a commit after the sync's read is always noticed.
   */
  private arm(): boolean {
    if (this.watcher || this.stopped || this.watchUnavailable) return true;
    try {
      const walName = basename(this.o.walPath);
      const dbName = basename(this.o.dbPath);
      this.watcher = watch(dirname(this.o.dbPath), { persistent: false }, (_event, name) => {
        if (name !== walName && name !== dbName) return;
        this.disarm();
        this.request(false);
      });
      // A sync re-arms it; one is asked for so that the watch does not stay off until the poll.
      this.watcher.on('error', () => {
        this.disarm();
        this.request(false);
      });
      return true;
    } catch (err) {
      // Later failures (a momentary EMFILE or inotify limit) leave the watch off until the next sync
      // tries again; only a watch that cannot be had at start-up turns watching off for good.
      this.armError = describeError(err);
      return false;
    }
  }

  private disarm(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** Asks for a sync as soon as the gap (unless `soon`: a recheck) and any backoff allow. */
  request(durable: boolean, soon = false): void {
    if (this.stopped) return;
    this.pending = (this.pending ?? false) || durable;
    if (this.running || this.timer) return;
    const now = monotonicMs();
    const gap = soon ? 0 : this.lastRunAt + this.o.minGapMs - now;
    this.gapWaited = gap > 0;
    const delay = Math.max(0, gap, this.backoffUntil - now);
    const run = () => {
      this.timer = undefined;
      void this.runPending();
    };
    // Due now (the usual poll): in this turn of the event loop, not in a timer that wakes it once more.
    if (delay <= 0) {
      const immediate = setImmediate(run);
      this.timer = { cancel: () => clearImmediate(immediate) };
      return;
    }
    const timeout = setTimeout(run, delay);
    timeout.unref();
    this.timer = { cancel: () => clearTimeout(timeout) };
  }

  private cancelScheduled(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private async runPending(): Promise<void> {
    if (this.stopped || this.pending === undefined) return;
    const durable = this.pending;
    this.pending = undefined;
    this.running = true;
    this.lastRunAt = monotonicMs();
    const gapWaited = this.gapWaited;
    // Armed before the sync reads the WAL, so a commit after that read is noticed (unless busy: see there).
    const watched = !this.busy;
    if (watched) this.arm();
    try {
      const outcome = await this.o.run(durable);
      this.busy = (outcome === 'copied' || outcome === 'in-progress-after-copy') && (gapWaited || !watched);
      this.succeeded();
      if (this.busy) this.request(false);
      else if (!watched) {
        this.arm();
        if (outcome !== 'in-progress') this.request(false); // an in-progress recheck looks again anyway
      }
      this.recheckLater(outcome);
    } catch (err) {
      this.busy = false;
      if (!watched) this.arm();
      this.failed(err);
    } finally {
      this.running = false;
    }
    if (this.pending !== undefined) this.request(this.pending);
  }

  private recheckLater(outcome: SyncOutcome): void {
    if (this.recheck) clearTimeout(this.recheck);
    this.recheck = undefined;
    if (this.stopped) return;
    if (outcome !== 'in-progress') {
      this.recheckMs = 0;
      // A busy app: the next sync after the gap, as its next file event would have asked.
      if (outcome === 'in-progress-after-copy') this.request(false);
      return;
    }
    // A commit's fsync takes a few milliseconds: look again soon, not after the gap, then back off.
    const pollMs = this.o.monitorIntervalMs > 0 ? this.o.monitorIntervalMs : 1000;
    this.recheckMs = Math.min(pollMs, this.recheckMs === 0 ? FIRST_RECHECK_MS : this.recheckMs * 2);
    this.recheck = setTimeout(() => {
      this.recheck = undefined;
      this.request(false, true);
    }, this.recheckMs);
    this.recheck.unref();
  }

  private succeeded(): void {
    if (this.failures > 0) this.o.log.info('sync recovered', { db: this.o.dbPath, failures: this.failures });
    this.failures = 0;
    this.backoffUntil = -Infinity;
    this.lastLogged = undefined;
  }

  private failed(err: unknown): void {
    this.failures++;
    const now = monotonicMs();
    const first = this.o.firstBackoffMs ?? 100;
    const backoff = Math.min(this.o.maxBackoffMs ?? 30_000, first * 2 ** Math.min(this.failures - 1, 20));
    this.backoffUntil = now + backoff;
    const message = describeError(err);
    const repeatMs = this.o.repeatLogMs ?? 30_000;
    if (!this.lastLogged || this.lastLogged.message !== message || now - this.lastLogged.at >= repeatMs) {
      this.o.log.error('sync failed', { db: this.o.dbPath, error: message, failures: this.failures, retry: `${Math.round(backoff)}ms` });
      this.lastLogged = { message, at: now };
    }
    this.o.onError?.(err);
    // Retry after the backoff even if nothing changes on disk (the poll may be off).
    this.request(false);
  }
}
