/**
 * The application's side of a replication that runs in a worker thread: a Replication whose shipper
 * and replicas are proxies. The worker (replication-worker.ts) owns the SQLite connections, the file
 * watching, the uploads and the timers; this side sends calls (sync, close, snapshot, …), re-emits the
 * worker's events, forwards its log lines to the caller's logger, and answers `pos()` and friends from
 * the state that comes with every message — so after an awaited call they are the worker's own.
 *
 * Keeping the process alive: in-process, the library's watchers and timers are unref'd, so an app that
 * forgets close() still exits. The worker is unref'd likewise while idle, and ref'd only while a call is
 * pending: an `await r.sync()` at the end of a script must not let the process exit under it (nothing
 * else may be keeping the loop alive), and background replication must not keep it alive after the app
 * is done. After close(), the worker is terminated.
 */
import { Worker } from 'node:worker_threads';
import { readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { OperationCounter, OperationCounts, ReplicaClient, SnapshotInfo } from '../client/replica-client.js';
import { describeError, ReplicateError } from '../errors.js';
import { nullLogger, type Logger } from '../logger.js';
import type { Pos } from '../pos.js';
import type { RetentionResult, ValidationCounts, ValidationResult } from '../replica/replica.js';
import { Replication, type ReplicaView, type ReplicationOptions, type ShipperView } from '../replication.js';
import { defaultMetaPath, MetaDir } from '../shipper/meta.js';
import type { ShadowWalUsage } from '../shipper/shadow-limit.js';
import { describeClient, type ClientDescription } from './client-transfer.js';
import type { ReplicationStatus } from '../replication-status.js';
import { rebuildError, type CallMethod, type CallResult, type FromWorker, type ReplicaSettings, type ReplicationState, type ToWorker, type WorkerInit } from './worker-protocol.js';

export interface TransferableClient {
  description: ClientDescription;
  counter: OperationCounter;
}

/** Each client's description, or undefined if one of them cannot be rebuilt in a worker. */
export function transferableClients(clients: ReplicaClient[]): TransferableClient[] | undefined {
  const out: TransferableClient[] = [];
  for (const c of clients) {
    const t = describeClient(c);
    if (!t) return undefined;
    out.push(t);
  }
  return out;
}

let checkedBuild: string | undefined;

/**
 * The worker's entry file. From dist/ (the package, the benchmarks) it sits next to this file. From the
 * TypeScript sources (vitest transforms them in memory, and Node 20 cannot run .ts in a worker thread)
 * the worker runs the compiled copy in dist/ — built by `npm run build`, which `npm test` runs first; a
 * build older than the sources is refused rather than silently tested.
 */
function workerEntry(): URL {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new URL('./replication-worker.js', here);
  const root = fileURLToPath(new URL('../../', here));
  const entry = join(root, 'dist', 'src', 'embedded', 'replication-worker.js');
  if (checkedBuild !== entry) {
    let built: number;
    try {
      built = statSync(entry).mtimeMs;
    } catch {
      throw new ReplicateError('IO', `starting the replication worker: ${entry} is missing (run npm run build, or pass inline: true)`);
    }
    const newer = newestSource(join(root, 'src'));
    if (newer.mtimeMs > built) {
      throw new ReplicateError('IO', `starting the replication worker: the build in dist/ is older than ${newer.path} (run npm run build, or pass inline: true)`);
    }
    checkedBuild = entry;
  }
  return new URL(`file://${entry}`);
}

function newestSource(dir: string): { path: string; mtimeMs: number } {
  let best = { path: dir, mtimeMs: 0 };
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    const c = e.isDirectory() ? newestSource(p) : e.name.endsWith('.ts') ? { path: p, mtimeMs: statSync(p).mtimeMs } : undefined;
    if (c && c.mtimeMs > best.mtimeMs) best = c;
  }
  return best;
}

interface Pending {
  resolve: (v: CallResult) => void;
  reject: (err: Error) => void;
}

export class WorkerReplication extends Replication {
  readonly shipper: ShipperProxy;
  readonly replicas: readonly ReplicaProxy[];
  readonly inWorker = true;
  readonly dbPath: string;
  private readonly log: Logger;
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  private closed = false;
  private readonly counters: OperationCounter[];
  private readonly lastCounts: OperationCounts[];
  private startWait: Pending | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = () => this.post({ t: 'abort' });

  private constructor(opts: ReplicationOptions, names: string[], clients: TransferableClient[]) {
    super();
    this.dbPath = opts.dbPath;
    this.log = opts.logger ?? nullLogger;
    this.counters = clients.map((c) => c.counter);
    this.lastCounts = clients.map(() => ({ LIST: 0, PUT: 0, GET: 0, DELETE: 0 }));
    this.shipper = new ShipperProxy(this, opts.dbPath, new MetaDir(opts.metaPath ?? defaultMetaPath(opts.dbPath)));
    this.replicas = opts.replicas.map((r, i) => new ReplicaProxy(this, i, names[i]!, r.client));
    const init: WorkerInit = {
      dbPath: opts.dbPath,
      metaPath: opts.metaPath,
      monitorIntervalMs: opts.monitorIntervalMs,
      checkpointIntervalMs: opts.checkpointIntervalMs,
      minCheckpointPageCount: opts.minCheckpointPageCount,
      maxCheckpointPageCount: opts.maxCheckpointPageCount,
      maxShadowWalBytes: opts.maxShadowWalBytes,
      maxShadowWalFileBytes: opts.maxShadowWalFileBytes,
      continueAfterRestore: opts.continueAfterRestore,
      waitForDatabase: opts.waitForDatabase,
      aborted: opts.signal?.aborted ?? false,
      log: opts.logger !== undefined && opts.logger !== nullLogger,
      replicas: opts.replicas.map((r, i) => ({
        name: names[i]!,
        client: clients[i]!.description,
        syncIntervalMs: r.syncIntervalMs,
        snapshotIntervalMs: r.snapshotIntervalMs,
        retentionMs: r.retentionMs,
        retentionCheckIntervalMs: r.retentionCheckIntervalMs,
        validationIntervalMs: r.validationIntervalMs,
        age: r.age,
      })),
    };
    // No inherited execArgv: the worker runs only library code, and some of the process's flags are
    // refused in a worker (--input-type, given to `node -e` scripts, ends it at once). An uncaught error
    // there comes back as an 'error' event (below); the library prints nothing.
    this.worker = new Worker(workerEntry(), { workerData: init, name: `stn-replicate ${opts.dbPath}`, execArgv: [] });
    this.worker.on('message', (m: FromWorker) => this.receive(m));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => {
      if (!this.closed) this.fail(new Error(`the worker thread exited (code ${code})`));
    });
    this.signal = opts.signal;
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Starts the worker and waits until its replication has started (or failed to, with its error). */
  static async launch(opts: ReplicationOptions, names: string[], clients: TransferableClient[]): Promise<WorkerReplication> {
    const r = new WorkerReplication(opts, names, clients);
    try {
      await new Promise<CallResult>((resolve, reject) => {
        r.startWait = { resolve, reject };
        r.updateRef();
      });
    } catch (err) {
      r.closed = true;
      r.signal?.removeEventListener('abort', r.onAbort);
      await r.worker.terminate();
      throw err;
    }
    return r;
  }

  /** @internal A call to the worker; resolves with its result, after the state that came with it. */
  call(method: CallMethod, replica?: number): Promise<CallResult> {
    if (this.failure) return Promise.reject(this.failure);
    // The worker is gone once closed: a call now would never be answered.
    if (this.closed) return Promise.reject(new ReplicateError('IO', `replication of ${this.dbPath} is closed`));
    const id = this.nextId++;
    return new Promise<CallResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.updateRef();
      this.post({ t: 'call', id, method, ...(replica !== undefined ? { replica } : {}) });
    });
  }

  private post(m: ToWorker): void {
    if (!this.closed && !this.failure) this.worker.postMessage(m);
  }

  private updateRef(): void {
    if (this.pending.size > 0 || this.startWait) this.worker.ref();
    else this.worker.unref();
  }

  private receive(m: FromWorker): void {
    switch (m.t) {
      case 'log':
        this.log[m.level](m.msg, m.fields);
        return;
      case 'started':
        this.applyState(m.state);
        this.replicas.forEach((r, i) => r.settle(m.settings[i]!));
        this.startWait?.resolve(undefined);
        this.startWait = undefined;
        this.updateRef();
        return;
      case 'startFailed':
        this.startWait?.reject(rebuildError(m.error));
        this.startWait = undefined;
        return;
      case 'state':
        this.applyState(m.state);
        return;
      case 'event':
        this.applyState(m.state);
        this.emitEvent(m.name, m.payload);
        return;
      case 'reply': {
        this.applyState(m.state);
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        this.updateRef();
        if (!p) return;
        if (m.ok) p.resolve(m.value);
        else p.reject(rebuildError(m.error));
        return;
      }
    }
  }

  private emitEvent(name: string, payload: Record<string, unknown>): void {
    if (name === 'error') {
      const e = payload as { replica?: string; error: Parameters<typeof rebuildError>[0] };
      // As in-process: an 'error' event only when someone listens (unheard, it would throw here).
      if (this.listenerCount('error') > 0) this.emit('error', { ...(e.replica !== undefined ? { replica: e.replica } : {}), error: rebuildError(e.error) });
      return;
    }
    (this.emit as (n: string, p: unknown) => boolean)(name, payload);
  }

  private applyState(s: ReplicationState): void {
    this.shipper.state = s.shipper;
    s.replicas.forEach((rs, i) => {
      this.replicas[i]!.state = rs;
      // The worker's requests, counted by the client the caller holds.
      const last = this.lastCounts[i]!;
      for (const op of ['LIST', 'PUT', 'GET', 'DELETE'] as const) {
        const delta = rs.requestCounts[op] - last[op];
        if (delta > 0) this.counters[i]!.add(op, delta);
        last[op] = rs.requestCounts[op];
      }
    });
  }

  /** A worker that died (an uncaught error, or it exited): every call fails from now on, with why. */
  private fail(cause: unknown): void {
    if (this.failure || this.closed) return;
    this.failure = new ReplicateError('IO', `replication of ${this.dbPath}: the worker thread failed: ${describeError(cause)}; nothing is replicated any more`, { cause });
    this.signal?.removeEventListener('abort', this.onAbort);
    this.log.error('replication worker failed', { db: this.dbPath, error: describeError(cause) });
    this.startWait?.reject(this.failure);
    this.startWait = undefined;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    this.updateRef();
    if (this.listenerCount('error') > 0) this.emit('error', { error: this.failure });
  }

  override async sync(): Promise<void> {
    if (this.closed && !this.failure) return; // as in-process: nothing more to upload once closed
    await this.call('sync');
  }

  /** The worker's figures, fresh (lag is measured there, on the clock its marks were taken with). */
  override async status(): Promise<ReplicationStatus> {
    return (await this.call('status')) as ReplicationStatus;
  }

  override close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.failure) throw this.failure;
      try {
        await this.call('close');
      } finally {
        this.closed = true;
        this.signal?.removeEventListener('abort', this.onAbort);
        await this.worker.terminate();
        this.emit('close');
      }
    })();
    return this.closing;
  }
}

type ShipperState = ReplicationState['shipper'];

class ShipperProxy implements ShipperView {
  readonly walPath: string;
  /** @internal */
  state: ShipperState = { pos: undefined, opened: false, pageSize: undefined, usage: { bytes: 0, limit: 0, limitReached: 0 }, restoredFrom: undefined };

  constructor(
    private readonly r: WorkerReplication,
    readonly dbPath: string,
    readonly meta: MetaDir,
  ) {
    this.walPath = `${dbPath}-wal`;
  }

  get opened(): boolean {
    return this.state.opened;
  }

  get pageSize(): number | undefined {
    return this.state.pageSize;
  }

  pos(): Pos | undefined {
    return this.state.pos;
  }

  restoredFrom(): Pos | undefined {
    return this.state.restoredFrom;
  }

  shadowWalUsage(): Readonly<ShadowWalUsage> {
    return this.state.usage;
  }

  async durablePos(): Promise<Pos | undefined> {
    return (await this.r.call('durablePos')) as Pos | undefined;
  }

  async sync(): Promise<void> {
    await this.r.call('shipperSync');
  }
}

class ReplicaProxy implements ReplicaView {
  /** @internal */
  state: ReplicationState['replicas'][number] = { pos: undefined, error: undefined, validations: { ok: 0, mismatch: 0, error: 0 }, requestCounts: { LIST: 0, PUT: 0, GET: 0, DELETE: 0 } };
  private settings: ReplicaSettings = { snapshotIntervalMs: 0, retentionMs: 0, retentionCheckIntervalMs: 0, validationIntervalMs: 0 };
  private errorOf: { key: string; error: Error } | undefined;

  constructor(
    private readonly r: WorkerReplication,
    private readonly i: number,
    readonly name: string,
    readonly client: ReplicaClient,
  ) {}

  /** @internal The settings as the worker resolved them. */
  settle(s: ReplicaSettings): void {
    this.settings = s;
  }

  get snapshotIntervalMs(): number {
    return this.settings.snapshotIntervalMs;
  }
  get retentionMs(): number {
    return this.settings.retentionMs;
  }
  get retentionCheckIntervalMs(): number {
    return this.settings.retentionCheckIntervalMs;
  }
  get validationIntervalMs(): number {
    return this.settings.validationIntervalMs;
  }

  get validations(): Readonly<ValidationCounts> {
    return this.state.validations;
  }

  get error(): unknown {
    const e = this.state.error;
    if (e === undefined) return undefined;
    // One rebuilt object per error the worker reported (each state message carries a fresh copy), so
    // that repeated reads of one error compare equal.
    const key = `${e.name}\n${e.stack ?? e.message}`;
    if (this.errorOf?.key !== key) this.errorOf = { key, error: rebuildError(e) };
    return this.errorOf.error;
  }

  pos(): Pos | undefined {
    return this.state.pos;
  }

  async sync(): Promise<void> {
    await this.r.call('replicaSync', this.i);
  }

  async snapshot(): Promise<SnapshotInfo> {
    return (await this.r.call('snapshot', this.i)) as SnapshotInfo;
  }

  async enforceRetention(): Promise<RetentionResult | undefined> {
    return (await this.r.call('enforceRetention', this.i)) as RetentionResult | undefined;
  }

  async validate(): Promise<ValidationResult> {
    return (await this.r.call('validate', this.i)) as ValidationResult;
  }
}
