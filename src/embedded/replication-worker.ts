/**
 * The replication worker thread's entry (started by WorkerReplication, never imported): it rebuilds the
 * replica clients from their descriptions, runs an InProcessReplication — so the shipper's SQLite
 * connections, its file watching and every upload live on this thread's event loop, not the
 * application's — and answers the application thread's calls. Events, log lines and the state that
 * `pos()` and friends are read from go back as messages.
 *
 * A message this file does not know is a bug: it throws, which ends the worker with an 'error' event that
 * the application thread turns into failed calls and an 'error' event of its own.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ReplicateError } from '../errors.js';
import { nullLogger, type LogFields, type Logger } from '../logger.js';
import { InProcessReplication } from '../replication.js';
import { clientFromDescription } from './client-transfer.js';
import {
  cloneable,
  serializeError,
  type CallMethod,
  type CallResult,
  type FromWorker,
  type ReplicationState,
  type ToWorker,
  type WorkerInit,
} from './worker-protocol.js';

if (!parentPort) throw new ReplicateError('INVALID_ARGUMENT', 'replication-worker.js runs as a worker thread only');
const port = parentPort;
const init = workerData as WorkerInit;
const abort = new AbortController();
if (init.aborted) abort.abort();

function post(m: FromWorker): void {
  port.postMessage(m);
}

function forward(level: 'debug' | 'info' | 'warn' | 'error') {
  return (msg: string, fields?: LogFields) => {
    try {
      post({ t: 'log', level, msg, ...(fields ? { fields } : {}) });
    } catch {
      // A field structured clone refuses (a function, a handle): sent as text instead.
      post({ t: 'log', level, msg, fields: cloneable(fields) as LogFields });
    }
  };
}

const logger: Logger = init.log
  ? { debug: forward('debug'), info: forward('info'), warn: forward('warn'), error: forward('error') }
  : nullLogger;

let replication: InProcessReplication | undefined;

function state(): ReplicationState {
  const r = replication!;
  const sh = r.shipper;
  return {
    shipper: {
      pos: sh.pos(),
      opened: sh.opened,
      pageSize: sh.pageSize,
      usage: { ...sh.shadowWalUsage() },
      restoredFrom: sh.restoredFrom(),
    },
    replicas: r.replicas.map((x) => ({
      pos: x.pos(),
      error: x.error === undefined ? undefined : serializeError(x.error),
      validations: { ...x.validations },
      requestCounts: { ...x.client.requestCounts() },
    })),
  };
}

// Position changes come in bursts (one per copy); one state message per turn of this loop is enough.
let stateQueued = false;
function queueState(): void {
  if (stateQueued) return;
  stateQueued = true;
  setImmediate(() => {
    stateQueued = false;
    post({ t: 'state', state: state() });
  });
}

async function run(method: CallMethod, i: number | undefined): Promise<CallResult> {
  const r = replication!;
  const replica = () => {
    const x = i === undefined ? undefined : r.replicas[i];
    if (!x) throw new ReplicateError('INVALID_ARGUMENT', `no replica #${i}`);
    return x;
  };
  switch (method) {
    case 'sync':
      return r.sync();
    case 'close':
      return r.close();
    case 'shipperSync':
      return r.shipper.sync();
    case 'durablePos':
      return r.shipper.durablePos();
    case 'replicaSync':
      return replica().sync();
    case 'snapshot':
      return replica().snapshot();
    case 'enforceRetention':
      return replica().enforceRetention();
    case 'validate':
      return replica().validate();
    case 'status':
      return r.statusNow();
    default:
      throw new ReplicateError('INVALID_ARGUMENT', `unknown call ${String(method)}`);
  }
}

function receive(m: ToWorker): void {
  if (m.t === 'abort') {
    abort.abort();
    return;
  }
  if (m.t !== 'call') throw new ReplicateError('INVALID_ARGUMENT', `replication worker: unknown message ${JSON.stringify(m)}`);
  run(m.method, m.replica).then(
    (value) => post({ t: 'reply', id: m.id, ok: true, value, state: state() }),
    (err: unknown) => post({ t: 'reply', id: m.id, ok: false, error: serializeError(err), state: state() }),
  );
}

async function start(): Promise<void> {
  try {
    replication = await InProcessReplication.start({
      dbPath: init.dbPath,
      metaPath: init.metaPath,
      monitorIntervalMs: init.monitorIntervalMs,
      checkpointIntervalMs: init.checkpointIntervalMs,
      minCheckpointPageCount: init.minCheckpointPageCount,
      maxCheckpointPageCount: init.maxCheckpointPageCount,
      maxShadowWalBytes: init.maxShadowWalBytes,
      maxShadowWalFileBytes: init.maxShadowWalFileBytes,
      continueAfterRestore: init.continueAfterRestore,
      waitForDatabase: init.waitForDatabase,
      replicas: init.replicas.map((r) => ({ ...r, client: clientFromDescription(r.client) })),
      logger,
      signal: abort.signal,
      inline: true,
    });
  } catch (err) {
    post({ t: 'startFailed', error: serializeError(err) });
    return;
  }
  const r = replication;
  const event = (name: string) => (payload: Record<string, unknown>) => post({ t: 'event', name, payload, state: state() });
  for (const name of ['generation', 'snapshot', 'segment', 'checkpoint', 'retention', 'validation'] as const) {
    r.on(name, event(name));
  }
  r.on('error', (e) =>
    post({
      t: 'event',
      name: 'error',
      payload: { ...(e.replica !== undefined ? { replica: e.replica } : {}), error: serializeError(e.error) },
      state: state(),
    }),
  );
  r.shipper.on('position', queueState);
  port.on('message', receive);
  post({
    t: 'started',
    state: state(),
    settings: r.replicas.map((x) => ({
      snapshotIntervalMs: x.snapshotIntervalMs,
      retentionMs: x.retentionMs,
      retentionCheckIntervalMs: x.retentionCheckIntervalMs,
      validationIntervalMs: x.validationIntervalMs,
    })),
  });
}

// Abort may come while starting (a database that does not exist yet is waited for).
port.on('message', (m: ToWorker) => {
  if (m.t === 'abort') abort.abort();
});
void start();
