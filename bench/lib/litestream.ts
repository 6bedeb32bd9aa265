/**
 * The real Litestream v0.3.13 binary as the restore bench's fixture writer (its binary, version and
 * environment are in ./shared.js).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cleanEnv, litestreamBin, onLines } from './shared.js';

export interface ReplicateOptions {
  dbPath: string;
  replicaDir: string;
  configPath: string;
  /** WAL pages before Litestream checkpoints; each checkpoint starts a new WAL index in the replica. */
  minCheckpointPageCount: number;
  /** sync-interval and monitor-interval (default 100ms). */
  interval?: string;
}

/** `litestream replicate -config …` whose log lines can be awaited. */
export class Replicator {
  readonly lines: string[] = [];
  private exitCode: number | null | undefined;
  private readonly exited: Promise<number | null>;
  private readonly listeners = new Set<() => void>();

  private constructor(private readonly child: ChildProcess) {
    const onLine = (line: string) => {
      this.lines.push(line);
      for (const l of this.listeners) l();
    };
    onLines(child.stdout, onLine);
    onLines(child.stderr, onLine);
    this.exited = new Promise((resolve) =>
      child.on('exit', (code) => {
        this.exitCode = code;
        for (const l of this.listeners) l();
        resolve(code);
      }),
    );
  }

  static start(o: ReplicateOptions): Replicator {
    // monitor-interval: Litestream polls the WAL this often (default 1s); at 100ms, like sync-interval,
    // it keeps up with the writer, so checkpoints (and new WAL indexes) happen every few MB as intended.
    const yml = [
      'dbs:',
      `  - path: ${o.dbPath}`,
      `    monitor-interval: ${o.interval ?? '100ms'}`,
      `    min-checkpoint-page-count: ${o.minCheckpointPageCount}`,
      '    replicas:',
      '      - type: file',
      `        path: ${o.replicaDir}`,
      `        sync-interval: ${o.interval ?? '100ms'}`,
      '',
    ].join('\n');
    writeFileSync(o.configPath, yml);
    const child = spawn(litestreamBin(), ['replicate', '-config', o.configPath], {
      env: cleanEnv({ LANG: 'C' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new Replicator(child);
  }

  tail(n = 20): string {
    return this.lines.slice(-n).join('\n');
  }

  /** Index of the first line at or after `from` matching `re`; rejects on timeout or exit. */
  waitFor(re: RegExp, from = 0, timeoutMs = 60_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const done = (err: Error | undefined, i = -1) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        if (err) reject(err);
        else resolve(i);
      };
      const check = () => {
        const i = this.lines.findIndex((l, idx) => idx >= from && re.test(l));
        if (i !== -1) done(undefined, i);
        else if (this.exitCode !== undefined) done(new Error(`litestream exited (${this.exitCode}) before ${re}:\n${this.tail()}`));
      };
      const timer = setTimeout(() => done(new Error(`timed out waiting for ${re}:\n${this.tail()}`)), timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  /**
   * Waits until no line matching `re` has appeared for `quietMs`. Litestream only logs "wal segment
   * written" when it shipped something, so silence after the last write means it has caught up.
   */
  async waitQuiet(re: RegExp, quietMs: number, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const from = this.lines.length;
      try {
        await this.waitFor(re, from, quietMs);
      } catch (e) {
        if (this.exitCode !== undefined) throw e;
        return; // the quiet period passed without a match
      }
      if (Date.now() > deadline) throw new Error(`litestream kept logging ${re} for ${timeoutMs} ms:\n${this.tail()}`);
    }
  }

  /** SIGINT (Litestream's graceful shutdown) and wait for the exit, SIGKILL after 15 s. */
  async stop(): Promise<number | null> {
    if (this.exitCode !== undefined) return this.exitCode;
    this.child.kill('SIGINT');
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    const code = await this.exited;
    clearTimeout(killer);
    return code;
  }
}
