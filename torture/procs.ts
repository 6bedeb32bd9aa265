/**
 * Child processes of a round: every one is tracked so that every exit path (a failed round, an
 * interrupted run) can kill what is left, and each is started under `setpriv --pdeathsig KILL` where
 * util-linux has it, so that even a SIGKILLed runner leaves no replicator or writer behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { onLines } from '../bench/lib/shared.js';

const SETPRIV = '/usr/bin/setpriv';

export interface ProcOptions {
  env: Record<string, string>;
  /** A pipe for control lines (the long-lived writer), or nothing. */
  stdin?: 'pipe' | 'ignore';
  /** Everything the process prints (stdout and stderr) is appended here. */
  logFile?: string;
  /** Keep output lines in memory (small outputs only: app processes, CLI commands). */
  keepLines?: boolean;
  onLine?: (line: string) => void;
}

export interface ProcExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Proc {
  readonly lines: string[] = [];
  readonly exit: Promise<ProcExit>;
  exited: ProcExit | undefined;
  private waiters: { test: (l: string) => boolean; resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  private log: WriteStream | undefined;

  constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    private readonly opts: ProcOptions,
  ) {
    if (opts.logFile) this.log = createWriteStream(opts.logFile, { flags: 'a' });
    this.exit = new Promise((resolve) => {
      child.once('error', (e) => {
        this.lines.push(`spawn error: ${e.message}`);
        this.finish({ code: -1, signal: null }, resolve);
      });
      child.once('close', (code, signal) => this.finish({ code, signal }, resolve));
    });
    for (const stream of [child.stdout, child.stderr]) {
      stream?.on('data', (d: Buffer) => this.log?.write(d));
      onLines(stream, (l) => this.line(l));
    }
    child.stdin?.on('error', () => undefined); // writing to a process that just died is not an error here
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exited === undefined;
  }

  private finish(e: ProcExit, resolve: (e: ProcExit) => void): void {
    if (this.exited) return;
    this.exited = e;
    this.log?.end();
    for (const w of this.waiters.splice(0))
      w.reject(new Error(`${this.name} exited (${e.code ?? e.signal}) while waited on:\n${this.tail()}`));
    resolve(e);
  }

  private line(l: string): void {
    if (this.opts.keepLines) this.lines.push(l);
    this.opts.onLine?.(l);
    for (const w of [...this.waiters]) {
      if (w.test(l)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  }

  tail(n = 20): string {
    return this.lines.slice(-n).join('\n');
  }

  /** The next output line that passes `test` (lines already seen are not looked at again). */
  waitForLine(test: (l: string) => boolean, timeoutMs: number): Promise<string> {
    if (this.exited) return Promise.reject(new Error(`${this.name} already exited:\n${this.tail()}`));
    return new Promise((resolve, reject) => {
      const w = {
        test,
        resolve: (l: string) => {
          clearTimeout(timer);
          resolve(l);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`${this.name}: no expected output within ${timeoutMs} ms:\n${this.tail()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Waits for a JSON event line `{"ev": name}` from an app process. */
  async waitForEvent(ev: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const line = await this.waitForLine((l) => l.startsWith('{') && (JSON.parse(l) as { ev?: string }).ev === ev, timeoutMs);
    return JSON.parse(line) as Record<string, unknown>;
  }

  send(line: string): void {
    if (this.running) this.child.stdin?.write(`${line}\n`);
  }

  /** Writes `text` to stdin and closes it (the sqlite3 shell's script). */
  sendAndClose(text: string): void {
    this.child.stdin?.end(text);
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM (or `signal`), then SIGKILL after `graceMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 30_000): Promise<ProcExit & { forced: boolean }> {
    if (this.exited) return { ...this.exited, forced: false };
    this.kill(signal);
    let forced = false;
    const killer = setTimeout(() => {
      forced = true;
      this.kill('SIGKILL');
    }, graceMs);
    const e = await this.exit;
    clearTimeout(killer);
    return { ...e, forced };
  }
}

/** Every process a round started; `killAll` on any exit path. */
export class ProcessSet {
  private readonly procs = new Set<Proc>();

  spawn(name: string, cmd: string, args: string[], opts: ProcOptions): Proc {
    const [file, argv] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', '--', cmd, ...args]] : [cmd, args];
    const child = spawn(file, argv, { env: opts.env, stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'] });
    const p = new Proc(name, child, opts);
    this.procs.add(p);
    void p.exit.then(() => this.procs.delete(p));
    return p;
  }

  /** Runs a command to completion, output kept. */
  async run(
    name: string,
    cmd: string,
    args: string[],
    opts: ProcOptions & { input?: string },
  ): Promise<{ exit: ProcExit; stdout: string }> {
    const p = this.spawn(name, cmd, args, { ...opts, stdin: opts.input !== undefined ? 'pipe' : 'ignore', keepLines: true });
    if (opts.input !== undefined) p.sendAndClose(opts.input);
    const exit = await p.exit;
    return { exit, stdout: p.lines.join('\n') };
  }

  live(): Proc[] {
    return [...this.procs].filter((p) => p.running);
  }

  async killAll(): Promise<void> {
    const live = this.live();
    for (const p of live) p.kill('SIGKILL');
    await Promise.all(live.map((p) => p.exit));
  }
}
