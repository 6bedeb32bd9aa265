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
 *
 * The proxies are in worker-proxies.ts; finding the worker's entry file (and checking the build) is
 * worker-entry.ts.
 */
import { Worker } from 'node:worker_threads';
import type { OperationCounter, OperationCounts, ReplicaClient } from '../client/replica-client.js';
import { describeError, ReplicateError } from '../errors.js';
import { reportError } from '../internal/report-error.js';
import { nullLogger, type Logger } from '../logger.js';
import { Replication, type ReplicationOptions } from '../replication.js';
import { defaultMetaPath, MetaDir } from '../meta/meta-dir.js';
import { describeClient, type ClientDescription } from './client-transfer.js';
import type { ReplicationStatus } from '../replication-status.js';
import { workerEntry } from './worker-entry.js';
import { ReplicaProxy, ShipperProxy } from './worker-proxies.js';
import {
  rebuildError,
  type CallMethod,
  type CallResult,
  type FromWorker,
  type ReplicationState,
  type ToWorker,
  type WorkerInit,
} from './worker-protocol.js';

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
      if (!this.closed) this.fail(new ReplicateError('IO', `the worker thread exited (code ${code})`));
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
      reportError(this, { ...(e.replica !== undefined ? { replica: e.replica } : {}), error: rebuildError(e.error) });
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
    this.failure = new ReplicateError(
      'IO',
      `replication of ${this.dbPath}: the worker thread failed: ${describeError(cause)}; nothing is replicated any more`,
      { cause },
    );
    this.signal?.removeEventListener('abort', this.onAbort);
    this.log.error('replication worker failed', { db: this.dbPath, error: describeError(cause) });
    this.startWait?.reject(this.failure);
    this.startWait = undefined;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    this.updateRef();
    reportError(this, { error: this.failure });
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
