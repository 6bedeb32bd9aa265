/**
 * SIGINT and SIGTERM caught from the first line of the executable, before the command's modules load.
 *
 * `replicate` installs its own handlers only once its modules are loaded and its config is read, which
 * takes a second or more on a loaded machine. Left to Node's default action, a SIGTERM in that window
 * would end the process at once, skipping the final sync: an orchestrator that stops a replicator it has just
 * restarted loses whatever the application committed since the previous one died. Litestream catches
 * the signal before it opens anything and acts on it once replication has started; so do we.
 *
 * Any other command gets the default back: `release()` re-raises a signal that arrived meanwhile, so
 * `restore` still ends the way an uncaught SIGTERM ends a process.
 */

export type ShutdownSignal = 'SIGINT' | 'SIGTERM';
const SIGNALS: readonly ShutdownSignal[] = ['SIGINT', 'SIGTERM'];

export class SignalLatch {
  private pending: ShutdownSignal | undefined;
  private handler: ((sig: ShutdownSignal) => void) | undefined;
  private released = false;
  private readonly listener = (sig: ShutdownSignal) => {
    if (this.handler) this.handler(sig);
    else this.pending ??= sig;
  };

  /** Starts catching SIGINT and SIGTERM (the caller is the process's owner: the executable). */
  static install(): SignalLatch {
    const latch = new SignalLatch();
    for (const s of SIGNALS) process.on(s, latch.listener);
    return latch;
  }

  /** Hands every signal, including one caught before this call, to `handler` until `release()`. */
  take(handler: (sig: ShutdownSignal) => void): void {
    if (this.released) return;
    this.handler = handler;
    const sig = this.pending;
    this.pending = undefined;
    if (sig) handler(sig);
  }

  /** Stops catching; a signal caught and not taken is raised again, with its default action. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.handler = undefined;
    for (const s of SIGNALS) process.off(s, this.listener);
    if (this.pending) process.kill(process.pid, this.pending);
  }
}
