/**
 * The application as separate processes that open the database, write, and exit — the way real apps,
 * cron jobs and operators (the `sqlite3` CLI) use it. A test that keeps its own connection open all
 * along keeps the `-wal` alive and hides what happens when the last application connection closes.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sqliteOnce } from './sqlite-cli.js';

const run = promisify(execFile);

export const WRITER_KINDS = ['sqlite3', 'python', 'node'] as const;
export type WriterKind = (typeof WRITER_KINDS)[number];

/** `VALUES (id, v, n), …` for ids first..first+count-1, in SQL (for the CLI and python). */
function valuesSql(first: number, count: number, bytes: number): string {
  const rows: string[] = [];
  for (let i = 0; i < count; i++) rows.push(`(${first + i}, '${'x'.repeat(bytes)}', ${first})`);
  return rows.join(',');
}

/**
 * Inserts rows first..first+count-1 into `t (id, v, n)` from a new process of the given kind, in one
 * transaction, and waits for the process to exit (rejects on a non-zero exit, with its stderr).
 */
export async function writeFromProcess(kind: WriterKind, dbPath: string, first: number, count: number, bytes = 100): Promise<void> {
  switch (kind) {
    case 'sqlite3':
      await sqliteOnce(dbPath, `BEGIN; INSERT INTO t (id, v, n) VALUES ${valuesSql(first, count, bytes)}; COMMIT;`);
      return;
    case 'python':
      await run('python3', [
        '-c',
        'import sqlite3, sys\n' +
          'c = sqlite3.connect(sys.argv[1], timeout=10)\n' +
          'c.execute("BEGIN")\n' +
          'c.execute("INSERT INTO t (id, v, n) VALUES " + sys.argv[2])\n' +
          'c.commit()\n' +
          'c.close()\n',
        dbPath,
        valuesSql(first, count, bytes),
      ]);
      return;
    case 'node':
      await run(process.execPath, [join(import.meta.dirname, 'app-writer.cjs'), dbPath, String(first), String(count), String(bytes)]);
      return;
  }
}

/** Runs SQL through the `sqlite3` shell in a process of its own (as an operator would); returns its output. */
export async function sqliteCli(dbPath: string, sql: string): Promise<string> {
  return (await sqliteOnce(dbPath, sql)).join('\n');
}

/** POSIX locks that process `pid` holds on the file with inode `ino` (from /proc/locks). */
export async function locksHeldBy(pid: number, ino: number | bigint): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile('/proc/locks', 'utf8');
  return text.split('\n').filter((l) => {
    const f = l.trim().split(/\s+/);
    // "1: POSIX  ADVISORY  READ 1234 fd:01:5678 0 EOF": pid is field 4, maj:min:inode field 5.
    return f[4] === String(pid) && f[5]?.split(':')[2] === String(ino);
  });
}

/** A python process that runs `setup` (SQL statements) on its connection, says so, and holds on until released. */
async function holdInPython(
  dbPath: string,
  setup: string[],
  onRelease: string[],
): Promise<{ release: () => Promise<void>; kill: () => Promise<void> }> {
  const { spawn } = await import('node:child_process');
  const py = (stmts: string[]) => stmts.map((q) => `c.execute(${JSON.stringify(q)}).fetchall()\n`).join('');
  const child = spawn(
    'python3',
    [
      '-c',
      `import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)\n${py(setup)}print("holding", flush=True)\nsys.stdin.read()\n${py(onRelease)}c.close()\n`,
      dbPath,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`python3 holding ${dbPath} exited early (${code})`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    release: async () => {
      child.stdin.end();
      await exited;
    },
    /** SIGKILL: the connection is never closed cleanly (a crash, a power cut). */
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * An application process holding a read transaction open (BEGIN; SELECT …) until `release()`: a long
 * reader, which keeps SQLite from backfilling past its snapshot and so from restarting the WAL.
 */
export function holdReadTransaction(dbPath: string): Promise<{ release: () => Promise<void>; kill: () => Promise<void> }> {
  return holdInPython(dbPath, ['BEGIN', 'SELECT count(*) FROM sqlite_master', 'SELECT count(*) FROM t'], ['COMMIT']);
}

/**
 * An application process holding the write lock (BEGIN IMMEDIATE and a write) until `release()`, which
 * commits. Creates the table `t` if needed (so it also works on a brand-new database file).
 */
export function holdWriteLock(dbPath: string): Promise<{ release: () => Promise<void> }> {
  return holdInPython(
    dbPath,
    [
      'PRAGMA journal_mode=WAL',
      'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)',
      'BEGIN IMMEDIATE',
      "INSERT INTO t (v, n) VALUES ('written under the lock', 0)",
    ],
    ['COMMIT'],
  );
}
