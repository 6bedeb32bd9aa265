/**
 * When a replica syncs (Litestream's replica monitor loop): as soon as the shipper is ahead of it, but
 * no sooner than the sync interval after the last sync, and with a growing backoff after failures.
 * Apart from the upload loop (replica-uploader.ts), which does the sync and owns the position.
 */
import { monotonicMs } from '../internal/clock.js';
import type { StopSignal } from '../internal/stop-signal.js';
import { comparePos } from '../pos.js';
import type { WalShipper } from '../shipper/wal-shipper.js';
import type { ReplicaUploader } from './replica-uploader.js';

const MAX_BACKOFF_MS = 30_000;

export class ReplicaMonitor {
  private wake: (() => void) | undefined;

  constructor(
    private readonly shipper: WalShipper,
    private readonly uploader: ReplicaUploader,
    private readonly syncIntervalMs: number,
    /** The replica's stop signal: the loop ends, and its waits return, when it is stopped. */
    private readonly stop_: StopSignal,
  ) {
    shipper.on('position', () => this.wake?.());
  }

  /** Ends a wait for work at once (the replica stops). */
  wakeUp(): void {
    this.wake?.();
  }

  /** Runs until the stop signal: waits for work, keeps the sync interval, backs off after failures. */
  async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      await this.waitForWork();
      if (this.stopped) break;
      const wait = this.uploader.lastSyncAt + this.syncIntervalMs - monotonicMs();
      if (wait > 0) await this.sleep(wait);
      if (this.stopped) break;
      try {
        await this.shipper.catchUp();
        await this.uploader.sync();
        failures = 0;
      } catch {
        failures++;
        await this.sleep(Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(failures, 7)));
      }
    }
  }

  private behind(): boolean {
    const db = this.shipper.pos();
    // Another generation is always "behind", whatever the names' order (ours sort descending in time).
    const pos = this.uploader.pos();
    return db !== undefined && (pos === undefined || pos.generation !== db.generation || comparePos(pos, db) < 0);
  }

  private waitForWork(): Promise<void> {
    if (this.behind()) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
    });
  }

  /** Sleeps, unless stopped; position changes do not shorten the sync interval (see StopSignal). */
  private sleep(ms: number, unref = false): Promise<void> {
    return this.stop_.sleep(ms, unref);
  }

  private get stopped(): boolean {
    return this.stop_.isStopped;
  }
}
