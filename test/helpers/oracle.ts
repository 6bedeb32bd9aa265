/**
 * The real Litestream v0.3.13 binary as a test oracle: it writes replicas (so our restore is tested on
 * the real format) and restores/lists them (so what we write and print is checked against it).
 *
 * Waiting is done on Litestream's own log lines, never on sleeps: "snapshot written", "wal segment
 * written" (each carries `position=<generation>/<index hex8>:<offset>`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanEnv, litestreamBin, onLines, stnReplicateBin } from '../../bench/lib/shared.js';
import { integrityErrors } from './source-db.js';

export interface ReplicatorOptions {
  dbPath: string;
  replicaDir: string;
  syncInterval?: string;
  minCheckpointPageCount?: number;
  monitorInterval?: string;
  snapshotInterval?: string;
  retention?: string;
  /** stn-replicate's `continue-after-restore` (Litestream ignores the key). */
  continueAfterRestore?: boolean;
}

export function writeLitestreamConfig(o: ReplicatorOptions, dir = mkdtempSync(join(tmpdir(), 'stn-lscfg-'))): string {
  const lines = [
    'logging:',
    '  level: debug',
    'dbs:',
    `  - path: ${o.dbPath}`,
    ...(o.minCheckpointPageCount !== undefined ? [`    min-checkpoint-page-count: ${o.minCheckpointPageCount}`] : []),
    ...(o.monitorInterval !== undefined ? [`    monitor-interval: ${o.monitorInterval}`] : []),
    ...(o.continueAfterRestore !== undefined ? [`    continue-after-restore: ${o.continueAfterRestore}`] : []),
    '    replicas:',
    '      - type: file',
    `        path: ${o.replicaDir}`,
    `        sync-interval: ${o.syncInterval ?? '100ms'}`,
    ...(o.snapshotInterval !== undefined ? [`        snapshot-interval: ${o.snapshotInterval}`] : []),
    ...(o.retention !== undefined ? [`        retention: ${o.retention}`] : []),
  ];
  const path = join(dir, 'litestream.yml');
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

export interface LogPosition {
  generation: string;
  index: number;
  offset: number;
}

export function parsePosition(line: string): LogPosition | undefined {
  const m = /position=([0-9a-f]{16})\/([0-9a-f]{8}):(\d+)/.exec(line);
  return m ? { generation: m[1]!, index: parseInt(m[2]!, 16), offset: Number(m[3]) } : undefined;
}

/** A child process whose output lines can be awaited (a replicator: Litestream's or ours). */
export class LoggedProcess {
  /** Lines of stdout and stderr together, in arrival order. */
  readonly lines: string[] = [];
  /** Each stream's text on its own. */
  stdout = '';
  stderr = '';
  private waiters: { re: RegExp; after: number; resolve: (i: number) => void; reject: (e: Error) => void }[] = [];
  private exited: number | null | undefined;
  readonly exit: Promise<number | null>;
  constructor(
    readonly configPath: string,
    protected readonly child: ChildProcess,
  ) {
    this.exit = new Promise((r) => child.once('exit', (code) => r(code)));
    child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    const onLine = (line: string) => {
      this.lines.push(line);
      this.check();
    };
    onLines(child.stdout, onLine);
    onLines(child.stderr, onLine);
    child.on('exit', (code) => {
      this.exited = code;
      for (const w of this.waiters.splice(0)) w.reject(new Error(`litestream exited (${code}) while waiting for ${w.re}:\n${this.tail()}`));
    });
  }

  tail(n = 30): string {
    return this.lines.slice(-n).join('\n');
  }

  private check(): void {
    for (const w of [...this.waiters]) {
      const i = this.lines.findIndex((l, idx) => idx >= w.after && w.re.test(l));
      if (i !== -1) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(i);
      }
    }
  }

  /** Resolves with the index of the first line at or after `after` that matches. */
  waitForLog(re: RegExp, after = 0, timeoutMs = 20_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re}:\n${this.tail()}`));
      }, timeoutMs);
      const done = (i: number) => {
        clearTimeout(timer);
        resolve(i);
      };
      if (this.exited !== undefined) {
        clearTimeout(timer);
        reject(new Error(`litestream already exited (${this.exited}):\n${this.tail()}`));
        return;
      }
      this.waiters.push({
        re,
        after,
        resolve: done,
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.check();
    });
  }

  /** Waits for the first "wal segment written" line after line `after`; returns its position and line index. */
  async waitForSegment(after: number): Promise<{ line: number; pos: LogPosition }> {
    const line = await this.waitForLog(/msg="wal segment written"/, after);
    return { line, pos: parsePosition(this.lines[line]!)! };
  }

  /** False once the process has exited. */
  get running(): boolean {
    return this.exited === undefined;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  async stop(signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
    if (this.exited !== undefined) return this.exited;
    this.child.kill(signal);
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    const code = await this.exit;
    clearTimeout(killer);
    return code;
  }
}

/** `litestream replicate -config …` as a child process whose log lines can be awaited. */
export class LitestreamReplicator extends LoggedProcess {
  static start(o: ReplicatorOptions): LitestreamReplicator {
    const configPath = writeLitestreamConfig(o);
    const child = spawn(litestreamBin(), ['replicate', '-config', configPath], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    return new LitestreamReplicator(configPath, child);
  }
}

/** `stn-replicate replicate -config …` (the built binary) with the same config as the oracle's. */
export function startStnReplicator(o: ReplicatorOptions): LoggedProcess {
  const configPath = writeLitestreamConfig(o);
  const bin = stnReplicateBin();
  const child = spawn(process.execPath, [bin, 'replicate', '-config', configPath], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  return new LoggedProcess(configPath, child);
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the Litestream CLI (restore, generations, snapshots, wal, …) to completion. A successful
 * `restore -o OUT` is also checked with `PRAGMA integrity_check` (Litestream checks nothing): a
 * database that fails it rejects, naming the output and SQLite's findings, so every test that restores
 * with Litestream checks the file's structure as well as the content it compares.
 */
export async function runLitestream(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  const result = await runLitestreamRaw(args, env);
  const out = args[0] === 'restore' && result.code === 0 ? args[args.indexOf('-o') + 1] : undefined;
  if (out !== undefined && args.includes('-o')) {
    if (!existsSync(out)) {
      // Only the -if-… flags let a restore succeed without writing anything.
      if (args.some((a) => a.startsWith('-if-'))) return result;
      throw new Error(`litestream ${args.join(' ')}: exited 0 but wrote no ${out}`);
    }
    const errors = integrityErrors(out);
    if (errors.length > 0)
      throw new Error(`litestream ${args.join(' ')}: the restored ${out} fails integrity_check: ${errors.slice(0, 5).join('; ')}`);
  }
  return result;
}

function runLitestreamRaw(args: string[], env: Record<string, string>): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(litestreamBin(), args, { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Parses a tabwriter table (header line, then rows) into records keyed by the header's words. */
export function parseTable(text: string): Record<string, string>[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return [];
  const keys = lines[0]!.trim().split(/\s+/);
  return lines.slice(1).map((l) => {
    const cells = l.trim().split(/\s+/);
    return Object.fromEntries(keys.map((k, i) => [k, cells[i] ?? '']));
  });
}

/**
 * Our listing rows as Litestream v0.3.13 prints them, for comparing the two: times in whole seconds
 * (ours have milliseconds), without our `status` column, and generations in Litestream's order (by name;
 * ours are oldest first). docs/compatibility.md lists these differences.
 */
export function asLitestreamPrints(rows: readonly Record<string, string>[]): Record<string, string>[] {
  const out = rows.map(({ status: _status, ...row }) => {
    for (const k of ['start', 'end', 'created']) if (row[k] !== undefined) row[k] = row[k].replace(/\.\d{3}Z$/, 'Z');
    return row;
  });
  if (out.some((r) => 'name' in r && 'start' in r))
    out.sort((a, b) =>
      a.name! < b.name! ? -1 : a.name! > b.name! ? 1 : a.generation! < b.generation! ? -1 : a.generation! > b.generation! ? 1 : 0,
    );
  return out;
}
