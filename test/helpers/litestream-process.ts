/**
 * The real Litestream v0.3.13 binary as a test oracle (`@flydotio/litestream-linux-x64`): a replicator
 * child process whose log lines can be awaited, and the one-shot CLI (restore, generations, snapshots, wal).
 *
 * Log format (config mode, `logging.level: debug`, slog text on STDOUT), lines used here:
 *   time=2026-11-28T16:47:30.235Z level=INFO msg="snapshot written" db=/abs/db replica=file position=<gen>/<idx hex8>:<offset dec> elapsed=4.8ms sz=<COMPRESSED bytes>
 *   time=… level=INFO msg="wal segment written" db=… replica=file position=<gen>/<idx hex8>:<offset dec> elapsed=… sz=<UNCOMPRESSED bytes>
 *   time=… level=INFO msg="sync: new generation" db=… generation=<gen> reason="no generation exists"
 *   time=… level=DEBUG msg=sync db=… info="&{generation:<gen> … shadowWALPath:<abs>/<idx hex8>.wal shadowWALSize:<n> restart:false reason:}"
 *   time=… level=DEBUG msg="sync: ok" db=…
 *   time=… level=DEBUG msg=checkpoint db=… mode=PASSIVE result=0,6,6
 * `time=` is Go's wall clock truncated to milliseconds (same CLOCK_REALTIME as Node's Date.now()).
 * A segment's `position` is its START; its end is offset + sz. Snapshot `position` carries the DB position,
 * but the snapshot object is named after the index only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';

export function litestreamBin(): string {
  const pkg = createRequire(import.meta.url).resolve('@flydotio/litestream-linux-x64/package.json');
  return join(dirname(pkg), 'litestream');
}

/** A clean explicit environment for the oracle: PATH and HOME only (never inherit AWS_*, LITESTREAM_*, …). */
export function litestreamEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: process.env.HOME ?? tmpdir(), ...extra };
}

// ---------------------------------------------------------------------------------------------------------
// Positions and log parsing

export interface LogPosition {
  generation: string;
  index: number;
  offset: number;
}

const POSITION_RE = /position=([0-9a-f]{16})\/([0-9a-f]{8}):(\d+)/;

export function parsePosition(line: string): LogPosition | undefined {
  const m = POSITION_RE.exec(line);
  return m ? { generation: m[1]!, index: parseInt(m[2]!, 16), offset: Number(m[3]) } : undefined;
}

export function formatPosition(p: LogPosition): string {
  return `${p.generation}/${hex8(p.index)}:${p.offset}`;
}

export function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** Epoch milliseconds of a log line's `time=` field (undefined if absent). */
export function logLineTime(line: string): number | undefined {
  const m = /^time=(\S+)/.exec(line);
  if (!m) return undefined;
  const t = Date.parse(m[1]!);
  return Number.isNaN(t) ? undefined : t;
}

function field(line: string, key: string): string | undefined {
  const m = new RegExp(`(?:^| )${key}=("(?:[^"\\\\]|\\\\.)*"|\\S*)`).exec(line);
  if (!m) return undefined;
  const v = m[1]!;
  return v.startsWith('"') ? (JSON.parse(v) as string) : v;
}

/** An uploaded object, from a "snapshot written" or "wal segment written" line. */
export interface UploadEvent {
  kind: 'snapshot' | 'segment';
  /** Index of the log line in `LitestreamReplicator.lines`. */
  line: number;
  replica: string;
  position: LogPosition;
  /** Segment: uncompressed bytes (so the segment covers [offset, offset+size)). Snapshot: compressed bytes. */
  size: number;
  /** Absolute path of the object, when the replica is the harness' own `file` replica. */
  path: string;
}

export function snapshotPath(replicaDir: string, generation: string, index: number): string {
  return join(replicaDir, 'generations', generation, 'snapshots', `${hex8(index)}.snapshot.lz4`);
}

export function segmentPath(replicaDir: string, generation: string, index: number, offset: number): string {
  return join(replicaDir, 'generations', generation, 'wal', `${hex8(index)}_${hex8(offset)}.wal.lz4`);
}

/** The object's CreatedAt as Litestream's file backend sees it: mtime with nanoseconds. */
export function mtimeNs(path: string): bigint {
  return statSync(path, { bigint: true }).mtimeNs;
}

/** RFC 3339 with nanoseconds ("2026-11-28T16:47:30.231460228Z"); Litestream's -timestamp accepts it. */
export function rfc3339Nano(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const iso = new Date(ms).toISOString(); // …T16:47:30.231Z
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  return `${iso.slice(0, 19)}.${frac}Z`;
}

// ---------------------------------------------------------------------------------------------------------
// Config

export interface ReplicatorOptions {
  dbPath: string;
  replicaDir: string;
  /** Name of the harness' file replica (default: Litestream's default, the type "file"). */
  replicaName?: string;
  /** DB-level knobs (spec §5.7); Litestream's defaults are 1000 / 10000 / 1m / 1s. */
  minCheckpointPageCount?: number;
  maxCheckpointPageCount?: number;
  checkpointInterval?: string;
  /** How often the DB is polled (default here 50ms; Litestream's default 1s). */
  monitorInterval?: string;
  /** Replica knobs (spec §6): default here sync-interval 100ms; snapshot-interval/retention Litestream's. */
  syncInterval?: string;
  snapshotInterval?: string;
  retention?: string;
  retentionCheckInterval?: string;
  validationInterval?: string;
  /** Raw YAML appended to the replica list, indented for it, e.g. "      - type: file\n        path: /x\n        name: second". */
  extraReplicaYaml?: string;
  /** Directory for litestream.yml (default: a fresh temp dir). */
  configDir?: string;
}

const q = (s: string) => JSON.stringify(s); // a YAML double-quoted scalar

export function litestreamConfigYaml(o: ReplicatorOptions): string {
  for (const p of [o.dbPath, o.replicaDir]) if (!isAbsolute(p)) throw new Error(`litestream config needs absolute paths: ${p}`);
  const lines = [
    'logging:',
    '  level: debug',
    '  type: text',
    'dbs:',
    `  - path: ${q(o.dbPath)}`,
    `    monitor-interval: ${o.monitorInterval ?? '50ms'}`,
    ...(o.minCheckpointPageCount !== undefined ? [`    min-checkpoint-page-count: ${o.minCheckpointPageCount}`] : []),
    ...(o.maxCheckpointPageCount !== undefined ? [`    max-checkpoint-page-count: ${o.maxCheckpointPageCount}`] : []),
    ...(o.checkpointInterval !== undefined ? [`    checkpoint-interval: ${o.checkpointInterval}`] : []),
    '    replicas:',
    '      - type: file',
    ...(o.replicaName !== undefined ? [`        name: ${q(o.replicaName)}`] : []),
    `        path: ${q(o.replicaDir)}`,
    `        sync-interval: ${o.syncInterval ?? '100ms'}`,
    ...(o.snapshotInterval !== undefined ? [`        snapshot-interval: ${o.snapshotInterval}`] : []),
    ...(o.retention !== undefined ? [`        retention: ${o.retention}`] : []),
    ...(o.retentionCheckInterval !== undefined ? [`        retention-check-interval: ${o.retentionCheckInterval}`] : []),
    ...(o.validationInterval !== undefined ? [`        validation-interval: ${o.validationInterval}`] : []),
  ];
  let yaml = `${lines.join('\n')}\n`;
  if (o.extraReplicaYaml) yaml += `${o.extraReplicaYaml.replace(/\n*$/, '')}\n`;
  return yaml;
}

/** Writes litestream.yml (into `o.configDir` or a fresh temp dir) and returns its absolute path. */
export function writeLitestreamConfig(o: ReplicatorOptions): string {
  const dir = o.configDir ?? mkdtempSync(join(tmpdir(), 'stn-lscfg-'));
  mkdirSync(dir, { recursive: true });
  const path = resolve(dir, 'litestream.yml');
  writeFileSync(path, litestreamConfigYaml(o));
  return path;
}

// ---------------------------------------------------------------------------------------------------------
// The replicator

interface Waiter {
  test: (line: string, index: number) => boolean;
  after: number;
  what: string;
  resolve: (index: number) => void;
  reject: (e: Error) => void;
}

export interface WaitOptions {
  /** Only lines with index >= after match (default 0: lines already seen count). */
  after?: number;
  timeoutMs?: number;
}

/** `litestream replicate -config <file>` as a child process. */
export class LitestreamReplicator {
  readonly lines: string[] = [];
  /** Exit code (null if killed by a signal); undefined while running. */
  exitCode: number | null | undefined;
  exitSignal: NodeJS.Signals | null = null;
  readonly exited: Promise<number | null>;
  readonly replicaName: string;
  private waiters: Waiter[] = [];
  private stopping = false;
  private partial = '';

  private constructor(
    readonly options: ReplicatorOptions,
    readonly configPath: string,
    private readonly child: ChildProcess,
  ) {
    this.replicaName = options.replicaName ?? 'file';
    const onData = (d: Buffer) => {
      this.partial += d.toString('utf8');
      let nl: number;
      while ((nl = this.partial.indexOf('\n')) !== -1) {
        this.push(this.partial.slice(0, nl));
        this.partial = this.partial.slice(nl + 1);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    // 'close' fires after the stdio streams are drained, so the log tail is complete.
    this.exited = new Promise((resolveExit) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null, err?: Error) => {
        if (this.exitCode !== undefined) return;
        if (this.partial) this.push(this.partial), (this.partial = '');
        this.exitCode = code;
        this.exitSignal = signal;
        const why = err ? `failed to start: ${err.message}` : this.stopping ? `was stopped (code ${code}, signal ${signal})` : `exited unexpectedly (code ${code}, signal ${signal})`;
        for (const w of this.waiters.splice(0)) w.reject(new Error(`litestream ${why} while waiting for ${w.what}\n--- log tail ---\n${this.tail()}`));
        resolveExit(code);
      };
      child.once('close', (code, signal) => finish(code, signal));
      child.once('error', (err) => finish(null, null, err));
    });
  }

  get dbPath(): string {
    return this.options.dbPath;
  }

  get replicaDir(): string {
    return this.options.replicaDir;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Writes the config, spawns `litestream replicate`, and resolves once it logs "replicating to". */
  static async start(o: ReplicatorOptions): Promise<LitestreamReplicator> {
    const configPath = writeLitestreamConfig(o);
    const child = spawn(litestreamBin(), ['replicate', '-config', configPath], { env: litestreamEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const r = new LitestreamReplicator(o, configPath, child);
    try {
      await r.waitForLog(/msg="replicating to"/, { timeoutMs: 10_000 });
    } catch (e) {
      await r.stop('SIGKILL');
      throw e;
    }
    return r;
  }

  tail(n = 40): string {
    return this.lines.slice(-n).join('\n');
  }

  private push(line: string): void {
    const index = this.lines.push(line) - 1;
    for (const w of [...this.waiters]) {
      if (index >= w.after && w.test(line, index)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(index);
      }
    }
  }

  /** Resolves with the index of the first line (index >= after) for which `test` holds. */
  waitForLine(test: (line: string, index: number) => boolean, what: string, opts: WaitOptions = {}): Promise<number> {
    const after = opts.after ?? 0;
    for (let i = after; i < this.lines.length; i++) if (test(this.lines[i]!, i)) return Promise.resolve(i);
    if (this.exitCode !== undefined) {
      return Promise.reject(new Error(`litestream already exited (code ${this.exitCode}) while waiting for ${what}\n--- log tail ---\n${this.tail()}`));
    }
    const timeoutMs = opts.timeoutMs ?? 20_000;
    return new Promise<number>((resolveWait, rejectWait) => {
      const w: Waiter = {
        test,
        after,
        what,
        resolve: (i) => {
          clearTimeout(timer);
          resolveWait(i);
        },
        reject: (e) => {
          clearTimeout(timer);
          rejectWait(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        rejectWait(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n--- log tail ---\n${this.tail()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Resolves with the index of the first line (index >= opts.after, default 0) matching `pattern`. */
  waitForLog(pattern: RegExp, opts: WaitOptions = {}): Promise<number> {
    const re = new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''));
    return this.waitForLine((l) => re.test(l), String(pattern), opts);
  }

  /** Parses an upload line of this replicator's own replica (undefined for other lines/replicas). */
  uploadAt(index: number): UploadEvent | undefined {
    const line = this.lines[index];
    if (line === undefined) return undefined;
    const kind = line.includes('msg="wal segment written"') ? 'segment' : line.includes('msg="snapshot written"') ? 'snapshot' : undefined;
    if (!kind) return undefined;
    const replica = field(line, 'replica') ?? '';
    const position = parsePosition(line);
    if (replica !== this.replicaName || !position) return undefined;
    const size = Number(field(line, 'sz') ?? NaN);
    const path =
      kind === 'segment'
        ? segmentPath(this.replicaDir, position.generation, position.index, position.offset)
        : snapshotPath(this.replicaDir, position.generation, position.index);
    return { kind, line: index, replica, position, size, path };
  }

  /** Every "wal segment written" of the harness' replica so far. */
  segments(): UploadEvent[] {
    return this.lines.map((_, i) => this.uploadAt(i)).filter((u): u is UploadEvent => u?.kind === 'segment');
  }

  /** Every "snapshot written" of the harness' replica so far. */
  snapshots(): UploadEvent[] {
    return this.lines.map((_, i) => this.uploadAt(i)).filter((u): u is UploadEvent => u?.kind === 'snapshot');
  }

  /** Generations announced by "sync: new generation" lines, in order. */
  generations(): string[] {
    return this.lines.filter((l) => l.includes('msg="sync: new generation"')).map((l) => field(l, 'generation')!);
  }

  /** Waits for a "wal segment written" line of the harness' replica (optionally satisfying `predicate`). */
  async waitForSegment(predicate: (s: UploadEvent) => boolean = () => true, opts: WaitOptions = {}): Promise<UploadEvent> {
    const i = await this.waitForLine(
      (_l, idx) => {
        const u = this.uploadAt(idx);
        return u?.kind === 'segment' && predicate(u);
      },
      '"wal segment written"',
      opts,
    );
    return this.uploadAt(i)!;
  }

  /** Waits for a "snapshot written" line of the harness' replica (optionally satisfying `predicate`). */
  async waitForSnapshot(predicate: (s: UploadEvent) => boolean = () => true, opts: WaitOptions = {}): Promise<UploadEvent> {
    const i = await this.waitForLine(
      (_l, idx) => {
        const u = this.uploadAt(idx);
        return u?.kind === 'snapshot' && predicate(u);
      },
      '"snapshot written"',
      opts,
    );
    return this.uploadAt(i)!;
  }

  /**
   * Waits until everything committed to the database before `sinceMs` (default: now) is in the replica.
   *
   * Exact, log-driven, no polling of files:
   *  1. the first DB sync that STARTED after `sinceMs` (a `msg=sync` line whose `time=` > sinceMs; the time is
   *     truncated to ms, so `>` means strictly after) copies every frame committed before it to the shadow WAL;
   *  2. the `msg=sync` line of the NEXT DB sync prints the shadow state left by (1) — generation, shadow index
   *     and frame-aligned shadow size — i.e. a DB position P covering the write;
   *  3. then we wait for a segment of this replica that reaches P (same generation, and index > P.index, or
   *     index == P.index and offset + size >= P.offset).
   * Returns P and the first upload that reached it (whose file mtime is the replica's CreatedAt for it).
   * Requires `logging.level: debug` (always set by this harness).
   */
  async waitForUpload(opts: { sinceMs?: number; timeoutMs?: number } = {}): Promise<{ position: LogPosition; upload: UploadEvent }> {
    const sinceMs = opts.sinceMs ?? Date.now();
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const isSyncStart = (l: string) => / msg=sync db=/.test(l);
    let from = await this.waitForLine((l) => isSyncStart(l) && (logLineTime(l) ?? 0) > sinceMs, `a DB sync starting after ${new Date(sinceMs).toISOString()}`, { timeoutMs });
    for (;;) {
      const ok = await this.waitForLog(/ msg="sync: ok"/, { after: from + 1, timeoutMs });
      const next = await this.waitForLine(isSyncStart, 'the next DB sync', { after: ok + 1, timeoutMs });
      const info = /generation:([0-9a-f]{16}) .*shadowWALPath:\S*\/([0-9a-f]{8})\.wal shadowWALSize:(\d+)/.exec(this.lines[next]!);
      if (!info) {
        from = next; // no generation yet: the next sync creates it
        continue;
      }
      const P: LogPosition = { generation: info[1]!, index: parseInt(info[2]!, 16), offset: Number(info[3]) };
      const upload = await this.waitForSegment(
        (s) =>
          s.position.generation === P.generation &&
          (s.position.index > P.index || (s.position.index === P.index && s.position.offset + s.size >= P.offset)),
        { timeoutMs },
      );
      return { position: P, upload };
    }
  }

  /** Sends `signal` (default SIGINT: Litestream does a final sync), waits for exit; SIGKILL after 10 s. */
  async stop(signal: NodeJS.Signals = 'SIGINT', killAfterMs = 10_000): Promise<number | null> {
    if (this.exitCode !== undefined) return this.exitCode;
    this.stopping = true;
    this.child.kill(signal);
    const killer = setTimeout(() => this.child.kill('SIGKILL'), killAfterMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(killer);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// One-shot CLI

export interface CliRunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `litestream <args…>` to completion (restore, generations, snapshots, wal, databases, version) with
 * the clean environment (plus `opts.env`). Killed after `timeoutMs` (default 60 s). Note: with `-config`,
 * log lines go to stdout (slog text); in URL mode Go's default logger writes to stderr.
 */
export function litestreamCli(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<CliRunResult> {
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn(litestreamBin(), args, { env: litestreamEnv(opts.env), cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      rejectRun(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr });
    });
  });
}

/** `litestream restore <args…>`, e.g. `['-config', cfg, '-o', out, '-timestamp', ts, dbPath]`. */
export function litestreamRestore(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<CliRunResult> {
  return litestreamCli(['restore', ...args], opts);
}

/**
 * Parses Litestream's tabwriter output (header line, then rows; columns left-aligned, padded with spaces)
 * into records keyed by the header words. Cells are cut at the header columns' start offsets, so empty cells
 * and cells containing single spaces survive. Non-table lines before the header are not expected on stdout
 * of listing commands in URL mode; in config mode pass only the table (logs may precede it — lines that
 * start with "time=" are skipped).
 */
export function parseTable(stdout: string): Record<string, string>[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('time='));
  if (lines.length === 0) return [];
  const header = lines[0]!;
  const cols = [...header.matchAll(/\S+/g)].map((m) => ({ key: m[0], start: m.index! }));
  return lines.slice(1).map((l) =>
    Object.fromEntries(
      cols.map((c, i) => {
        const end = i + 1 < cols.length ? cols[i + 1]!.start : undefined;
        return [c.key, l.slice(c.start, end).trim()];
      }),
    ),
  );
}
