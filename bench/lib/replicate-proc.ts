/**
 * Replicator processes for `bench:replicate`: our CLI or the real Litestream, each run under a public
 * resource timer (GNU time, or Python's resource module) so both are measured the same way from outside.
 *
 * Every child gets PATH and HOME only (shared.ts's cleanEnv): no AWS_ or LITESTREAM_ variables from
 * the host, identical for both tools.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { cleanEnv, litestreamBin, onLines, type Timer } from './shared.js';

export type Tool = 'ours' | 'litestream';

export interface ConfigOptions {
  dbPath: string;
  replicaDir: string;
  syncInterval: string;
  minCheckpointPageCount?: number;
  /** The replica's `age:` lines (--age), indented under the replica item. */
  ageLines?: string[];
}

/** The one config file both tools read (Litestream's YAML keys; everything else at its default). */
export function writeConfig(path: string, o: ConfigOptions): string {
  const lines = [
    'dbs:',
    `  - path: ${o.dbPath}`,
    ...(o.minCheckpointPageCount !== undefined ? [`    min-checkpoint-page-count: ${o.minCheckpointPageCount}`] : []),
    '    replicas:',
    '      - type: file',
    `        path: ${o.replicaDir}`,
    `        sync-interval: ${o.syncInterval}`,
    ...(o.ageLines ?? []).map((l) => `        ${l}`),
    '',
  ];
  writeFileSync(path, lines.join('\n'));
  return path;
}

// Python fallback: the replicator is its only child, so RUSAGE_CHILDREN is its usage (maxrss in KiB).
// Signals are for the replicator (sent to it directly); the wrapper just keeps waiting.
const PY = [
  'import resource, signal, subprocess, sys',
  'p = subprocess.Popen(sys.argv[2:])',
  'for s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, lambda *a: None)',
  'code = p.wait()',
  'ru = resource.getrusage(resource.RUSAGE_CHILDREN)',
  "open(sys.argv[1], 'w').write('%.3f %.3f %d\\n' % (ru.ru_utime, ru.ru_stime, ru.ru_maxrss))",
  'sys.exit(code if code >= 0 else 128 - code)',
].join('\n');

export interface Usage {
  userSeconds: number;
  sysSeconds: number;
  cpuSeconds: number;
  maxRssMiB: number;
}

export interface LogLine {
  /** performance.now() when the line was read from the pipe. */
  t: number;
  text: string;
}

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clkTck = Number(r.stdout.trim()) || 100;
  }
  return clkTck;
}

/** user+sys CPU seconds a live process has used so far, from /proc/<pid>/stat (undefined if gone). */
export function procCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond(); // utime (14), stime (15)
  } catch {
    return undefined;
  }
}

/** A live process's resident set now, from /proc/<pid>/status (VmRSS, MiB; undefined if gone). */
export function procRssMiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The pid of `parent`'s child: the replicator under the timer process. */
function childPid(parent: number): number | undefined {
  try {
    const direct = readFileSync(`/proc/${parent}/task/${parent}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    if (direct.length > 0) return Number(direct[0]);
  } catch {
    // no CONFIG_PROC_CHILDREN: scan below
  }
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent) return Number(e);
    } catch {
      // raced with an exit
    }
  }
  return undefined;
}

/** A replicator running under the timer; its log lines are kept with their arrival times. */
export class TimedReplicator {
  readonly lines: LogLine[] = [];
  private exitCode: number | null | undefined;
  private readonly exited: Promise<number | null>;
  private readonly listeners = new Set<() => void>();
  private pid: number | undefined;

  private constructor(
    readonly tool: Tool,
    private readonly child: ChildProcess,
    private readonly timeFile: string,
  ) {
    const onLine = (text: string) => {
      this.lines.push({ t: performance.now(), text });
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

  static start(tool: Tool, root: string, configPath: string, timer: Timer, timeFile: string): TimedReplicator {
    const cmd = tool === 'ours' ? [process.execPath, join(root, 'bin', 'stn-replicate.js')] : [litestreamBin()];
    const argv = [...cmd, 'replicate', '-config', configPath];
    const child =
      timer === 'gnu-time'
        ? spawn('/usr/bin/time', ['-f', '%U %S %M', '-o', timeFile, ...argv], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn('python3', ['-c', PY, timeFile, ...argv], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    return new TimedReplicator(tool, child, timeFile);
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** The replicator's own pid (not the timer's). */
  replicatorPid(): number | undefined {
    if (this.pid === undefined && this.child.pid !== undefined) this.pid = childPid(this.child.pid);
    return this.pid;
  }

  tail(n = 20): string {
    return this.lines
      .slice(-n)
      .map((l) => l.text)
      .join('\n');
  }

  /** Index of the first line at or after `from` matching `re`; rejects on timeout or exit. */
  waitFor(re: RegExp, from = 0, timeoutMs = 30_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const done = (err: Error | undefined, i = -1) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        if (err) reject(err);
        else resolve(i);
      };
      const check = () => {
        const i = this.lines.findIndex((l, idx) => idx >= from && re.test(l.text));
        if (i !== -1) done(undefined, i);
        else if (this.exitCode !== undefined)
          done(new Error(`${this.tool} replicator exited (${this.exitCode}) before ${re}:\n${this.tail()}`));
      };
      const timer = setTimeout(
        () => done(new Error(`timed out after ${timeoutMs} ms waiting for ${re} from ${this.tool}:\n${this.tail()}`)),
        timeoutMs,
      );
      this.listeners.add(check);
      check();
    });
  }

  /** Rejects if the process exits (for racing against other waits). */
  whenExited(): Promise<never> {
    return this.exited.then((code) => {
      throw new Error(`${this.tool} replicator exited (${code}):\n${this.tail()}`);
    });
  }

  /**
   * Signals the replicator itself (the timer only waits for it), waits for its exit, then reads the
   * timer's figures. SIGKILL after `graceMs`.
   */
  async stop(
    signal: NodeJS.Signals = 'SIGINT',
    graceMs = 20_000,
  ): Promise<{ code: number | null; stopSeconds: number; killed: boolean; usage: Usage | undefined }> {
    const t0 = performance.now();
    let killed = false;
    if (this.exitCode === undefined) {
      const pid = this.replicatorPid();
      if (pid !== undefined) process.kill(pid, signal);
      const killer = setTimeout(() => {
        killed = true;
        const p = this.replicatorPid();
        if (p !== undefined) process.kill(p, 'SIGKILL');
      }, graceMs);
      await this.exited;
      clearTimeout(killer);
    }
    const stopSeconds = (performance.now() - t0) / 1000;
    return { code: this.exitCode ?? null, stopSeconds, killed, usage: readUsage(this.timeFile) };
  }

  /** Kills it without ceremony (cleanup after a failure). */
  async kill(): Promise<void> {
    if (this.exitCode !== undefined) return;
    const pid = this.replicatorPid();
    if (pid !== undefined) process.kill(pid, 'SIGKILL');
    else this.child.kill('SIGKILL');
    await this.exited;
  }
}

function readUsage(file: string): Usage | undefined {
  if (!existsSync(file)) return undefined;
  // GNU time prefixes a note ("Command exited with non-zero status 1") when there is one; figures are last.
  const last = readFileSync(file, 'utf8').trim().split('\n').at(-1) ?? '';
  const [u, s, kib] = last.split(' ').map(Number);
  if (!Number.isFinite(u) || !Number.isFinite(s) || !Number.isFinite(kib)) return undefined;
  return { userSeconds: u!, sysSeconds: s!, cpuSeconds: u! + s!, maxRssMiB: kib! / 1024 };
}

/**
 * WAL segment files in a file replica (`generations/<gen>/wal/<index>/<offset>.wal.lz4`), noticed by
 * fs.watch on every directory of that tree with a 2 ms poll behind it. Temporary files (`*.tmp`) do not
 * count: a segment exists once its final name does.
 */
export class SegmentWatcher {
  private readonly watchers = new Map<string, FSWatcher>();

  constructor(readonly replicaDir: string) {}

  /** Every segment's path relative to the generations directory. */
  scan(): Set<string> {
    const found = new Set<string>();
    const gens = join(this.replicaDir, 'generations');
    const walk = (dir: string, rel: string, depth: number) => {
      let entries: string[];
      try {
        entries = readdirSync(dir);
      } catch {
        return;
      }
      this.watchDir(dir);
      for (const e of entries) {
        const p = join(dir, e);
        if (/\.wal(\.lz4)?$/.test(e)) {
          found.add(`${rel}/${e}`);
        } else if (depth < 3 && !e.endsWith('.tmp')) {
          try {
            if (statSync(p).isDirectory()) walk(p, `${rel}/${e}`, depth + 1);
          } catch {
            // removed meanwhile (retention)
          }
        }
      }
    };
    // generations/<gen>/wal/<index>/<file>: walk <gen> (depth 0), wal (1), <index> (2), and one level spare.
    let genNames: string[] = [];
    try {
      genNames = readdirSync(gens);
      this.watchDir(gens);
    } catch {
      // not created yet
    }
    for (const g of genNames) walk(join(gens, g, 'wal'), `${g}/wal`, 1);
    return found;
  }

  private onChange: (() => void) | undefined;
  private cancelWait: (() => void) | undefined;

  private watchDir(dir: string): void {
    if (this.watchers.has(dir)) return;
    try {
      const w = watch(dir, () => this.onChange?.());
      w.on('error', () => undefined);
      this.watchers.set(dir, w);
    } catch {
      // gone already
    }
  }

  /** Resolves with the time (performance.now()) a segment not in `before` was first seen, and its name. */
  waitForNew(before: Set<string>, timeoutMs: number): Promise<{ t: number; name: string }> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err: Error | undefined, v?: { t: number; name: string }) => {
        if (done) return;
        done = true;
        clearInterval(poll);
        clearTimeout(timer);
        this.onChange = undefined;
        this.cancelWait = undefined;
        if (err) reject(err);
        else resolve(v!);
      };
      const check = () => {
        if (done) return;
        const t = performance.now();
        for (const name of this.scan()) {
          if (!before.has(name)) return finish(undefined, { t, name });
        }
      };
      this.onChange = check;
      this.cancelWait = () => finish(new Error('cancelled'));
      const poll = setInterval(check, 2);
      const timer = setTimeout(() => finish(new Error(`no new WAL segment in ${this.replicaDir} within ${timeoutMs} ms`)), timeoutMs);
      check();
    });
  }

  /** Ends a pending waitForNew (it rejects with "cancelled"). */
  cancel(): void {
    this.cancelWait?.();
  }

  close(): void {
    this.cancel();
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}

/** Waits for the replicator's "snapshot written" line or its first WAL segment file, whichever is first. */
export async function waitStarted(rep: TimedReplicator, watcher: SegmentWatcher, timeoutMs = 30_000): Promise<string> {
  const exited = rep.whenExited();
  exited.catch(() => undefined);
  const byLog = rep.waitFor(/msg="snapshot written"/, 0, timeoutMs).then(() => 'snapshot written (log)');
  const byFile = watcher.waitForNew(new Set(), timeoutMs).then((s) => `first WAL segment file ${s.name}`);
  byLog.catch(() => undefined);
  byFile.catch(() => undefined);
  try {
    return await Promise.race([Promise.any([byLog, byFile]), exited]);
  } catch (e) {
    throw e instanceof AggregateError ? (e.errors[0] as Error) : e;
  } finally {
    watcher.cancel();
  }
}
