/**
 * The shipper and replicas of a replication that runs in a worker thread, as the application sees them:
 * proxies that answer `pos()`, `opened`, settings and errors from the state the worker sends with every
 * message, and turn every operation (sync, snapshot, retention, validation) into a call to the worker.
 * Apart from WorkerReplication (worker-replication.ts), which owns the worker and its messages, and fills
 * in their state.
 */
import type { ReplicaClient, SnapshotInfo } from '../client/replica-client.js';
import type { MetaDir } from '../meta/meta-dir.js';
import type { Pos } from '../pos.js';
import type { RetentionResult, ValidationCounts, ValidationResult } from '../replica/replica.js';
import type { ReplicaView, ShipperView } from '../replication.js';
import type { ShadowWalUsage } from '../shipper/shadow-limit.js';
import { rebuildError, type CallMethod, type CallResult, type ReplicaSettings, type ReplicationState } from './worker-protocol.js';

/** How a proxy reaches the worker: WorkerReplication.call. */
export interface WorkerCaller {
  call(method: CallMethod, replica?: number): Promise<CallResult>;
}

type ShipperState = ReplicationState['shipper'];

export class ShipperProxy implements ShipperView {
  readonly walPath: string;
  /** @internal */
  state: ShipperState = {
    pos: undefined,
    opened: false,
    pageSize: undefined,
    usage: { bytes: 0, limit: 0, limitReached: 0 },
    restoredFrom: undefined,
  };

  constructor(
    private readonly r: WorkerCaller,
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

export class ReplicaProxy implements ReplicaView {
  /** @internal */
  state: ReplicationState['replicas'][number] = {
    pos: undefined,
    error: undefined,
    validations: { ok: 0, mismatch: 0, error: 0 },
    requestCounts: { LIST: 0, PUT: 0, GET: 0, DELETE: 0 },
  };
  private settings: ReplicaSettings = { snapshotIntervalMs: 0, retentionMs: 0, retentionCheckIntervalMs: 0, validationIntervalMs: 0 };
  private errorOf: { key: string; error: Error } | undefined;

  constructor(
    private readonly r: WorkerCaller,
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
