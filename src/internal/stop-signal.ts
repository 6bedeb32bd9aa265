/**
 * Stopping background loops: `sleep` waits on the monotonic clock (a wall-clock step neither stretches
 * nor cuts the wait) and returns at once when `stop()` is called; `stopped` resolves then. Long timers
 * can be unref'd so that they never keep an embedding process alive.
 */
import { monotonicMs } from './clock.js';

/** setTimeout's limit; longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class StopSignal {
  private done = false;
  private readonly wakes = new Set<() => void>();
  private resolveStopped!: () => void;
  readonly stopped = new Promise<void>((r) => (this.resolveStopped = r));

  get isStopped(): boolean {
    return this.done;
  }

  stop(): void {
    this.done = true;
    for (const w of [...this.wakes]) w();
    this.resolveStopped();
  }

  async sleep(ms: number, unref = false): Promise<void> {
    const until = monotonicMs() + ms;
    for (let left = ms; left > 0 && !this.done; left = until - monotonicMs()) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(t);
          this.wakes.delete(wake);
          resolve();
        };
        const t = setTimeout(wake, Math.min(left, MAX_TIMER_MS));
        if (unref) t.unref();
        this.wakes.add(wake);
      });
    }
  }
}
