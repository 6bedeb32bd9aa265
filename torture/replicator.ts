/**
 * The replicator under test as a child process: ours (`node bin/stn-replicate.js`), the real Litestream
 * v0.3.13, or any command that takes `replicate -config FILE`. Both tools read the same litestream.yml
 * and log in the same text format at `level: debug`, which is where checkpoints and new generations are
 * counted from:
 *
 *   checkpoint      ours `msg=checkpoint … mode=PASSIVE log=… checkpointed=…`;
 *                   Litestream (db.go, after each `PRAGMA wal_checkpoint`) `msg=checkpoint … mode=… result=…`
 *   new generation  ours `msg="new generation" … generation=… reason=…`;
 *                   Litestream `msg="sync: new generation" … generation=… reason=…`
 *
 * Each start is a "boot" with its own log file; a new generation is expected only as the first of a
 * boot that followed the first start or a SIGKILL (continuity was really lost then), never otherwise.
 */
import { writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Proc, ProcessSet } from './procs.js';

export interface ReplicatorCommand {
  /** `ours`, `litestream`, or the command's base name. */
  name: string;
  cmd: string;
  /** Arguments before `replicate` (e.g. the script of a Node CLI). */
  args: string[];
}

export interface ToolPaths {
  nodePath: string;
  /** bin/stn-replicate.js of this repository (our restore and listings, whatever replicates). */
  oursBin: string;
  litestreamBin: string;
}

/**
 * `ours`, `litestream`, a path, or a command line (split on spaces; a `.js` file runs under Node). The
 * name (for the summary line) of a script is its checkout and file, e.g. `wt-lead/stn-replicate.js`.
 */
export function resolveReplicator(spec: string, tools: ToolPaths): ReplicatorCommand {
  if (spec === 'ours') return { name: 'ours', cmd: tools.nodePath, args: [tools.oursBin] };
  if (spec === 'litestream') return { name: 'litestream', cmd: tools.litestreamBin, args: [] };
  const words = spec.trim().split(/\s+/);
  const script = words.find((w) => w.endsWith('.js'));
  const name = script ? `${basename(dirname(dirname(resolve(script))))}/${basename(script)}` : basename(words[0]!);
  if (words[0]!.endsWith('.js')) return { name, cmd: tools.nodePath, args: words };
  return { name, cmd: words[0]!, args: words.slice(1) };
}

export interface ConfigOptions {
  dbPath: string;
  /** The replica's YAML keys, one `key: value` per line. */
  replica: string[];
  syncInterval: string;
  monitorInterval?: string;
  minCheckpointPageCount?: number;
  snapshotInterval?: string;
}

export function writeConfig(path: string, o: ConfigOptions): string {
  const lines = [
    'logging:',
    '  level: debug',
    'dbs:',
    `  - path: ${o.dbPath}`,
    ...(o.minCheckpointPageCount !== undefined ? [`    min-checkpoint-page-count: ${o.minCheckpointPageCount}`] : []),
    ...(o.monitorInterval !== undefined ? [`    monitor-interval: ${o.monitorInterval}`] : []),
    '    replicas:',
    ...o.replica.map((l, i) => `${i === 0 ? '      - ' : '        '}${l}`),
    `        sync-interval: ${o.syncInterval}`,
    ...(o.snapshotInterval !== undefined ? [`        snapshot-interval: ${o.snapshotInterval}`] : []),
  ];
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

export interface GenerationEvent {
  at: number;
  generation: string;
  reason: string;
  boot: number;
  expected: boolean;
  /** Why it counts as expected ('first start', 'restart after SIGKILL'), or 'mid-run'. */
  context: string;
}

export type BootEnd = 'killed' | 'stopped' | 'crashed';

interface Boot extends BootRecord {
  index: number;
  proc: Proc;
  startedAt: number;
  /** Lines it printed so far (the first one means its signal handlers are in place: see stop()). */
  lines: number;
}

/** How long a graceful stop waits for a boot that has printed nothing yet (see stop()). */
const FIRST_LINE_WAIT_MS = 20_000;

function logTime(line: string): number {
  const m = /^time=(\S+)/.exec(line);
  const t = m ? Date.parse(m[1]!) : NaN;
  return Number.isNaN(t) ? Date.now() : t;
}

export function isCheckpointLine(line: string): boolean {
  return /\bmsg=checkpoint(\s|$)/.test(line) || /"msg":"checkpoint"/.test(line);
}

export function parseGenerationLine(line: string): { generation: string; reason: string } | undefined {
  if (!/msg="[^"]*new generation[^"]*"|"msg":"[^"]*new generation/.test(line)) return undefined;
  const gen = /\bgeneration[=":]+([0-9a-f]{16})/.exec(line);
  const reason = /\breason=("(?:[^"\\]|\\.)*"|\S+)/.exec(line) ?? /"reason":("(?:[^"\\]|\\.)*")/.exec(line);
  let r = reason?.[1] ?? '';
  if (r.startsWith('"')) r = JSON.parse(r) as string;
  return { generation: gen?.[1] ?? '?', reason: r };
}

/** Peak number of events inside any window of `windowMs` (times in ms, any order). */
export function peakPerWindow(times: number[], windowMs = 1000): number {
  const t = [...times].sort((a, b) => a - b);
  let peak = 0;
  for (let i = 0, j = 0; j < t.length; j++) {
    while (t[j]! - t[i]! >= windowMs) i++;
    peak = Math.max(peak, j - i + 1);
  }
  return peak;
}

export interface BootRecord {
  end?: BootEnd;
  generations: { at: number; generation: string; reason: string }[];
}

/**
 * Which new generations were owed: the first of the first boot (nothing to continue), and the first of
 * a boot that followed a SIGKILL or a crash (the application may have changed the WAL meanwhile). Any
 * other (a second one in the same boot, or one after a graceful restart) broke the lineage mid-run.
 */
export function classifyGenerations(boots: readonly BootRecord[]): GenerationEvent[] {
  const out: GenerationEvent[] = [];
  boots.forEach((b, index) => {
    const prev = boots[index - 1];
    const context =
      index === 0
        ? 'first start'
        : prev?.end === 'killed'
          ? 'restart after SIGKILL'
          : prev?.end === 'crashed'
            ? 'restart after a crash'
            : 'restart';
    b.generations.forEach((g, i) => {
      const expected = i === 0 && context !== 'restart';
      out.push({ ...g, boot: index, expected, context: i === 0 ? context : 'mid-run' });
    });
  });
  return out;
}

export class ReplicatorRun {
  private readonly boots: Boot[] = [];
  readonly checkpointTimes: number[] = [];
  errorLines = 0;
  readonly unexpectedExits: string[] = [];
  private stopping = false;

  constructor(
    private readonly procs: ProcessSet,
    private readonly command: ReplicatorCommand,
    private readonly configPath: string,
    private readonly logDir: string,
    private readonly env: Record<string, string>,
    /** Called when the replicator exits on its own (not killed or stopped by the harness). */
    private readonly onCrash: (message: string) => void,
  ) {}

  get running(): boolean {
    return this.current?.proc.running ?? false;
  }

  private get current(): Boot | undefined {
    return this.boots[this.boots.length - 1];
  }

  get bootCount(): number {
    return this.boots.length;
  }

  start(): void {
    if (this.running) throw new Error('the replicator is already running');
    const index = this.boots.length;
    const boot: Boot = { index, startedAt: Date.now(), generations: [], lines: 0, proc: undefined as unknown as Proc };
    boot.proc = this.procs.spawn(`replicator#${index}`, this.command.cmd, [...this.command.args, 'replicate', '-config', this.configPath], {
      env: this.env,
      logFile: join(this.logDir, `replicator-${index}.log`),
      onLine: (l) => this.onLine(boot, l),
    });
    this.boots.push(boot);
    void boot.proc.exit.then((e) => {
      if (boot.end) return;
      boot.end = 'crashed';
      const msg = `replicator boot ${index} exited on its own (code ${e.code}, signal ${e.signal}); see replicator-${index}.log`;
      this.unexpectedExits.push(msg);
      if (!this.stopping) this.onCrash(msg);
    });
  }

  private onLine(boot: Boot, line: string): void {
    boot.lines++;
    if (isCheckpointLine(line)) this.checkpointTimes.push(logTime(line));
    if (/\blevel=ERROR\b|"level":"ERROR"/.test(line)) this.errorLines++;
    const g = parseGenerationLine(line);
    if (g) boot.generations.push({ at: logTime(line), ...g });
  }

  /** The current boot's next log line matching `re`. */
  waitForLog(re: RegExp, timeoutMs: number): Promise<string> {
    const boot = this.current;
    if (!boot?.proc.running) return Promise.reject(new Error('the replicator is not running'));
    return boot.proc.waitForLine((l) => re.test(l), timeoutMs);
  }

  /** SIGKILL, as an OOM killer or a power cut would; the caller restarts it. */
  async kill(): Promise<void> {
    const boot = this.current;
    if (!boot?.proc.running) return;
    boot.end = 'killed';
    boot.proc.kill('SIGKILL');
    await boot.proc.exit;
  }

  /**
   * SIGTERM: a graceful stop (both tools do a final sync). Not before the boot has printed its first
   * line: until its runtime has started and run the first line of the program, no process can catch a
   * signal, and SIGTERM's default action ends it with no final sync (CI, Node 24: a replicator restarted
   * in a round's last moments was stopped before it printed anything). Both tools catch the signal
   * before they print anything (ours from the executable's first line, src/cli/signal-latch.ts;
   * Litestream before its first log line), and act on it once replication has started.
   */
  async stop(graceMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; forced: boolean } | undefined> {
    this.stopping = true;
    const boot = this.current;
    if (!boot?.proc.running) return undefined;
    if (boot.lines === 0) await boot.proc.waitForLine(() => true, FIRST_LINE_WAIT_MS).catch(() => undefined);
    if (!boot.proc.running) return undefined;
    boot.end = 'stopped';
    const e = await boot.proc.stop('SIGTERM', graceMs);
    return { code: e.code, signal: e.signal, forced: e.forced };
  }

  generations(): GenerationEvent[] {
    return classifyGenerations(this.boots);
  }

  peakCheckpointsPerSecond(): number {
    return peakPerWindow(this.checkpointTimes);
  }
}
