/**
 * The application side of a round: starting app processes (Node roles from app.ts, python's sqlite3,
 * the sqlite3 shell), giving each writer its own id range and ledger file, and the background load that
 * runs for the whole round: a long-lived writer, short-lived writers of the three kinds, long read
 * transactions and the application's own checkpoints. `pause()` quiesces every writer (for a point in
 * time); readers may go on, they change nothing.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DbFacts } from './digest.js';
import type { AppRole } from './app-roles.js';
import { cliScript, parseCliOutput, PYTHON_WRITER, type ForeignWriterSpec } from './foreign-writers.js';
import { appendLedger } from './ledger.js';
import type { Proc, ProcessSet } from './procs.js';
import type { Rng } from './random.js';
import { CHECKPOINT_MODES, type LoadPlan, type WriterKind } from './schedule.js';

/** Each writer process gets ids [block * ID_BLOCK, (block + 1) * ID_BLOCK). */
const ID_BLOCK = 1_000_000;
/** App errors that mean the database itself is damaged: those fail the round. */
const DAMAGE = /malformed|corrupt|not a database|SQLITE_CORRUPT|SQLITE_NOTADB/i;

export interface WorkloadOptions {
  procs: ProcessSet;
  nodePath: string;
  appJs: string;
  db: string;
  ledgerDir: string;
  env: Record<string, string>;
}

export interface WorkloadCounts {
  writers: Record<WriterKind, number>;
  readers: number;
  checkpoints: Record<string, number>;
  appErrors: string[];
  damage: string[];
}

export class Workload {
  private block = 0;
  private paused = false;
  private stopped = false;
  private wake: (() => void)[] = [];
  private readonly pausable = new Set<Proc>();
  private readonly readers = new Set<Proc>();
  private longWriter: Proc | undefined;
  private loops: Promise<void>[] = [];
  readonly counts: WorkloadCounts = { writers: { node: 0, python: 0, cli: 0 }, readers: 0, checkpoints: {}, appErrors: [], damage: [] };

  constructor(
    private readonly o: WorkloadOptions,
    private readonly rng: Rng,
    private readonly plan: LoadPlan,
  ) {}

  private nextFirstId(): number {
    return ++this.block * ID_BLOCK;
  }

  private ledgerFile(name: string): string {
    return join(this.o.ledgerDir, `${name}.jsonl`);
  }

  /** Starts an app.ts role; failures are recorded (and damage fails the round). */
  role(name: string, role: AppRole, stdin: 'pipe' | 'ignore' = 'ignore'): Proc {
    const p = this.o.procs.spawn(name, this.o.nodePath, [this.o.appJs, JSON.stringify(role)], { env: this.o.env, stdin, keepLines: true });
    this.watch(p);
    return p;
  }

  private watch(p: Proc): void {
    void p.exit.then((e) => {
      if (e.code === 0 || e.signal === 'SIGKILL') return;
      const msg = `${p.name} exited ${e.code ?? e.signal}: ${p.tail(3)}`;
      this.counts.appErrors.push(msg);
      if (DAMAGE.test(msg)) this.counts.damage.push(msg);
    });
  }

  async init(): Promise<void> {
    const p = this.role('init', { role: 'init', db: this.o.db });
    const e = await p.exit;
    if (e.code !== 0) throw new Error(`creating the database failed: ${p.tail()}`);
  }

  /** Content digest, ledger keys and (optionally) integrity check of any database, from a child process. */
  async facts(path: string, integrity: boolean): Promise<DbFacts> {
    const p = this.o.procs.spawn('facts', this.o.nodePath, [this.o.appJs, JSON.stringify({ role: 'facts', db: path, integrity })], {
      env: this.o.env,
      keepLines: true,
    });
    await p.exit;
    const line = p.lines.find((l) => l.startsWith('{"ev":"facts"'));
    if (!line) throw new Error(`reading ${path} failed: ${p.tail(5)}`);
    return JSON.parse(line) as DbFacts;
  }

  /** One short-lived writer of the given kind: a few transactions, then it exits. */
  shortWriter(kind: WriterKind): Proc {
    const n = this.nextFirstId();
    const name = `${kind}-${n / ID_BLOCK}`;
    const spec: ForeignWriterSpec = {
      db: this.o.db,
      ledger: this.ledgerFile(name),
      name,
      seed: this.rng.int(1, 2 ** 31),
      firstId: n,
      transactions: this.rng.int(1, 4),
      rows: [1, 6],
      bodyBytes: [50, 3000],
      deleteChance: 0.25,
    };
    this.counts.writers[kind]++;
    if (kind === 'node')
      return this.role(name, { role: 'writer', ...spec, control: false, pauseMs: [0, 50], synchronousNormal: this.rng.chance(0.5) });
    if (kind === 'python') {
      const p = this.o.procs.spawn(name, 'python3', ['-c', PYTHON_WRITER, JSON.stringify(spec)], { env: this.o.env, keepLines: true });
      this.watch(p);
      return p;
    }
    const script = cliScript(spec, this.rng);
    const p = this.o.procs.spawn(name, 'sqlite3', ['-batch', this.o.db], { env: this.o.env, stdin: 'pipe', keepLines: true });
    p.sendAndClose(script.sql);
    this.watch(p);
    // The shell cannot write the ledger itself: its keeper does, from the markers printed after each COMMIT.
    void p.exit.then(() => {
      for (const tx of parseCliOutput(script, p.lines.join('\n')).committed) {
        appendLedger(spec.ledger, { op: 'insert', table: 'items', ids: tx.ids });
        if (tx.deleted.length > 0) appendLedger(spec.ledger, { op: 'delete', table: 'items', ids: tx.deleted });
      }
    });
    return p;
  }

  /** A writer with one connection for many transactions (controlled on stdin: pause, resume, stop). */
  private startLongWriter(): Proc {
    const n = this.nextFirstId();
    const name = `long-${n / ID_BLOCK}`;
    return this.role(
      name,
      {
        role: 'writer',
        db: this.o.db,
        ledger: this.ledgerFile(name),
        name,
        seed: this.rng.int(1, 2 ** 31),
        firstId: n,
        control: true,
        rows: [1, 4],
        bodyBytes: [100, 2000],
        deleteChance: 0.1,
        pauseMs: this.plan.longWriterPauseMs,
        synchronousNormal: true,
      },
      'pipe',
    );
  }

  /**
   * Long-lived writers one after another, each for seconds, with gaps between them: long-lived, but not
   * for the whole round, because a connection that never closes keeps the `-wal` alive and hides what
   * happens when the application's last connection closes.
   */
  private async longWriters(rng: Rng): Promise<void> {
    while (!this.stopped) {
      if (!(await this.gate()) || this.paused) continue;
      const p = (this.longWriter = this.startLongWriter());
      await Promise.race([sleep(rng.int(...this.plan.longWriterLivesMs)), p.exit]);
      p.send('stop');
      await p.exit;
      if (this.stopped) break;
      await Promise.race([sleep(rng.int(...this.plan.longWriterGapMs)), new Promise<void>((r) => this.wake.push(r))]);
    }
  }

  /** A director event that writes (big transaction, VACUUM, doomed writer): an id range and a ledger. */
  idsAndLedger(name: string): { firstId: number; ledger: string } {
    return { firstId: this.nextFirstId(), ledger: this.ledgerFile(name) };
  }

  private async gate(): Promise<boolean> {
    while (this.paused && !this.stopped) await new Promise<void>((r) => this.wake.push(r));
    return !this.stopped;
  }

  private async loop(every: [number, number], rng: Rng, start: () => Proc | undefined, into: Set<Proc>): Promise<void> {
    while (!this.stopped) {
      await Promise.race([sleep(rng.int(every[0], every[1])), new Promise<void>((r) => this.wake.push(r))]);
      if (!(await this.gate())) return;
      if (this.paused) continue; // paused between the gate and here: pause() must not miss a process
      const p = start();
      if (!p) continue;
      into.add(p);
      void p.exit.then(() => into.delete(p));
    }
  }

  startBackground(): void {
    const writers = this.rng.fork('writers');
    const readers = this.rng.fork('readers');
    const checkpoints = this.rng.fork('checkpoints');
    this.loops = [
      this.longWriters(this.rng.fork('long-writers')),
      this.loop(this.plan.shortWriterEveryMs, writers, () => this.shortWriter(writers.weighted(this.plan.writerKinds)), this.pausable),
      this.loop(
        this.plan.readerEveryMs,
        readers,
        () => {
          this.counts.readers++;
          return this.role(`reader-${this.counts.readers}`, {
            role: 'reader',
            db: this.o.db,
            holdMs: readers.int(...this.plan.readerHoldMs),
          });
        },
        this.readers,
      ),
      this.loop(
        this.plan.checkpointEveryMs,
        checkpoints,
        () => {
          const mode = checkpoints.pick(CHECKPOINT_MODES);
          this.counts.checkpoints[mode] = (this.counts.checkpoints[mode] ?? 0) + 1;
          return this.role(`checkpoint-${mode}`, { role: 'checkpoint', db: this.o.db, mode });
        },
        this.pausable,
      ),
    ];
  }

  private wakeAll(): void {
    for (const w of this.wake.splice(0)) w();
  }

  /** No writer runs once this resolves: short-lived ones have exited, the long-lived one is idle. */
  async pause(): Promise<void> {
    this.paused = true;
    while (this.pausable.size > 0) await Promise.all([...this.pausable].map((p) => p.exit));
    const lw = this.longWriter;
    if (lw?.running) {
      const paused = lw.waitForEvent('paused', 60_000);
      lw.send('pause');
      await paused.catch((e: unknown) => {
        if (lw.running) throw e;
      });
    }
  }

  resume(): void {
    this.paused = false;
    this.longWriter?.send('resume');
    this.wakeAll();
  }

  /** Ends the load: no new processes; the running ones finish (writers record their ledgers). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.paused = false;
    this.wakeAll();
    this.longWriter?.send('stop');
    await Promise.all(this.loops);
    const all = [...this.pausable, ...this.readers];
    await Promise.all(all.map((p) => p.exit));
  }
}
