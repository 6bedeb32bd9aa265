/**
 * The application as separate processes, through the `sqlite3` command-line shell: a one-shot process
 * that runs some SQL and exits (its exit closes its connection, as a cron job's or a short-lived app's
 * does), and a long-lived shell that stays open between statements. Tests of the shipper drive the
 * database this way rather than through a connection the test process keeps open, which would keep
 * the `-wal` file alive and hide bugs.
 *
 * `scripts/install-test-tools.sh` (run by `npm test`) installs the shell where it is missing.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SQLITE3 = process.env.SQLITE3_CLI ?? 'sqlite3';
const BUSY_TIMEOUT_MS = 5000;

export interface CheckpointRow {
  busy: number;
  log: number;
  checkpointed: number;
}

export type CheckpointMode = 'PASSIVE' | 'FULL' | 'RESTART' | 'TRUNCATE';

/** Parses `PRAGMA wal_checkpoint` output (`busy|log|checkpointed`). */
export function parseCheckpointRow(line: string): CheckpointRow {
  const m = /^(\d+)\|(-?\d+)\|(-?\d+)$/.exec(line.trim());
  if (!m) throw new Error(`not a wal_checkpoint result: ${JSON.stringify(line)}`);
  return { busy: Number(m[1]), log: Number(m[2]), checkpointed: Number(m[3]) };
}

/** Runs `sql` in a new `sqlite3` process that exits afterwards; resolves with its output lines. */
export async function sqliteOnce(dbPath: string, sql: string): Promise<string[]> {
  try {
    const { stdout } = await run(SQLITE3, ['-bail', '-cmd', `.timeout ${BUSY_TIMEOUT_MS}`, dbPath, sql]);
    return stdout.split('\n').filter((l) => l !== '');
  } catch (err) {
    const e = err as { code?: unknown; stderr?: string; message: string };
    if (e.code === 'ENOENT') throw new Error(`${SQLITE3} not found: run scripts/install-test-tools.sh as root (or set SQLITE3_CLI)`);
    throw new Error(`sqlite3 ${dbPath}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

/**
 * A long-lived `sqlite3` shell on one database: a separate process whose connection stays open between
 * statements (an application that keeps running). `-bail`: the first error ends the process, and the
 * pending `exec` rejects with its message.
 */
export class SqliteShell {
  private out = '';
  private err = '';
  private seq = 0;
  private pending: { marker: string; resolve: (lines: string[]) => void; reject: (e: Error) => void } | undefined;
  private exitCode: number | null | undefined;
  readonly closed: Promise<number | null>;

  private constructor(
    readonly dbPath: string,
    private readonly child: ChildProcessWithoutNullStreams,
  ) {
    child.stdout.on('data', (d: Buffer) => {
      this.out += d.toString();
      this.settle();
    });
    child.stderr.on('data', (d: Buffer) => (this.err += d.toString()));
    this.closed = new Promise((resolve) => {
      child.on('error', (e) => {
        this.fail(
          new Error(`${SQLITE3} could not be started (${e.message}): run scripts/install-test-tools.sh as root (or set SQLITE3_CLI)`),
        );
        resolve(null);
      });
      child.on('close', (code) => {
        this.exitCode = code;
        this.fail(new Error(`sqlite3 ${dbPath} exited (${code}): ${this.err.trim() || 'no error output'}`));
        resolve(code);
      });
    });
  }

  static open(dbPath: string): SqliteShell {
    const child = spawn(SQLITE3, ['-bail', '-cmd', `.timeout ${BUSY_TIMEOUT_MS}`, dbPath], { stdio: ['pipe', 'pipe', 'pipe'] });
    return new SqliteShell(dbPath, child);
  }

  /** Runs `sql` (one or more statements); resolves with the lines it printed. */
  exec(sql: string): Promise<string[]> {
    if (this.pending) throw new Error('SqliteShell: one statement at a time');
    if (this.exitCode !== undefined)
      return Promise.reject(new Error(`sqlite3 ${this.dbPath} has exited (${this.exitCode}): ${this.err.trim()}`));
    const marker = `--done-${++this.seq}--`;
    const done = new Promise<string[]>((resolve, reject) => (this.pending = { marker, resolve, reject }));
    const text = sql.trim();
    const lastLine = text.split('\n').at(-1)!.trim();
    const terminated = text.endsWith(';') || lastLine.startsWith('.') ? text : `${text};`;
    this.child.stdin.write(`${terminated}\nSELECT '${marker}';\n`);
    return done;
  }

  /** `PRAGMA wal_checkpoint(MODE)` with a short busy timeout (it is allowed to give up); the pragma's row. */
  async checkpoint(mode: CheckpointMode, busyTimeoutMs = 50): Promise<CheckpointRow> {
    const lines = await this.exec(`.timeout ${busyTimeoutMs}\nPRAGMA wal_checkpoint(${mode});\n.timeout ${BUSY_TIMEOUT_MS}`);
    if (lines.length !== 1) throw new Error(`wal_checkpoint(${mode}) printed ${JSON.stringify(lines)}`);
    return parseCheckpointRow(lines[0]!);
  }

  /** Ends the shell (its connection closes as an exiting application's does). */
  async close(): Promise<void> {
    if (this.exitCode === undefined) this.child.stdin.end('.quit\n');
    const code = await this.closed;
    if (code !== 0) throw new Error(`sqlite3 ${this.dbPath} exited (${code}): ${this.err.trim()}`);
  }

  /** For cleanup after a failed test. */
  kill(): void {
    if (this.exitCode === undefined) this.child.kill('SIGKILL');
  }

  private settle(): void {
    const p = this.pending;
    if (!p) return;
    const at = this.out.indexOf(`${p.marker}\n`);
    if (at === -1) return;
    const lines = this.out
      .slice(0, at)
      .split('\n')
      .filter((l) => l !== '');
    this.out = this.out.slice(at + p.marker.length + 1);
    this.pending = undefined;
    p.resolve(lines);
  }

  private fail(e: Error): void {
    const p = this.pending;
    this.pending = undefined;
    p?.reject(e);
  }
}
