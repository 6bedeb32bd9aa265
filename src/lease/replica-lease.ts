/**
 * One writer per replica: the lease a replicator holds on a replica path before it writes there, so
 * that two instances (a rolling deployment, a copy started by mistake) never interleave two histories.
 *
 * The store gives one primitive, a compare-and-swap of the lease object (ReplicaClient.writeLease);
 * everything else is here, the same for every backend:
 * - acquire: take a free lease (none, released, expired) with a conditional write; only one wins.
 * - expiry is judged by the waiter's own monotonic clock, never by comparing the holder's wall-clock
 *   times with ours: a lease is expired when the same version has been seen unchanged for its TTL.
 *   Clock skew between machines then does not matter, only clock rates over one TTL do.
 * - the holder renews every TTL/3 (up to TTL/30 early: see renewalDue) and counts its own deadline
 *   from the moment it *sent* its last successful renewal: deadline = sent + TTL - margin (margin =
 *   TTL/5). A waiter starts counting only once it has seen that renewal's version, which is after it
 *   was sent; so the holder stops writing at least `margin` before anyone can take over, and the
 *   margin covers clock-rate differences and an upload in flight at the deadline (each write checks
 *   the lease first; see guarded-client.ts).
 * - release: a clean stop writes a released record (holder null), which a waiter takes at once.
 * - a write whose outcome is unknown (it threw: a timeout, a reset, a 5xx) never counts as done; the
 *   store may still hold it, so the next look recognises our own record (an acquisition: a record of
 *   our instance is ours to take; a renewal: the exact bytes of a write that threw) instead of taking it
 *   for someone else's. The clients send conditional writes once, without SDK retries, for that reason.
 * - before the first acquisition, a store that may not enforce its conditions (object stores) is probed
 *   (ReplicaClient.probeLease): a store that ignores them fails with LEASE_UNSUPPORTED.
 * See docs/lease.md. Its parts: lease-options.ts (options, defaults, limits), lease-waiting.ts (waiting
 * for the lease to be free), renewal-schedule.ts (when renewals are made), stored-lease.ts (reading and
 * breaking the stored lease without holding it), lease-record.ts (the record's format),
 * guarded-client.ts (the check before every write).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { pid as processId } from 'node:process';
import { supportsLease, type LeaseCapableClient } from '../client/replica-client.js';
import { describeError, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import { nullLogger, type Logger } from '../logger.js';
import { DEFAULT_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from '../config/defaults.js';
import { LEASE_STOP_GRACE_MS, type ReplicaLeaseOptions } from './lease-options.js';
import { describeHolder, encodeLeaseRecord, type LeaseHolder, type LeaseRecord } from './lease-record.js';
import { waitForLease } from './lease-waiting.js';
import { renewalDue, sleepUntil } from './renewal-schedule.js';
import { readLease, type LeaseState } from './stored-lease.js';

// What a user of the lease needs (its options, the stored lease's helpers), importable from this one module.
export { DEFAULT_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from '../config/defaults.js';
export { LEASE_RETRY_CAP_MS, LEASE_STOP_GRACE_MS, type ReplicaLeaseOptions } from './lease-options.js';
export { breakLease, readLease, type LeaseState } from './stored-lease.js';

/** Shortest time a lease write may take before it is abandoned and tried again (see requestSignal). */
const MIN_WRITE_TIMEOUT_MS = 1_000;
/** Renewals whose outcome is unknown that are remembered (more fail before the deadline only on tiny TTLs). */
const MAX_UNCONFIRMED = 32;

type State = 'idle' | 'held' | 'lost' | 'released';

export interface ReplicaLeaseEvents {
  /** The lease was lost: not renewed in time, or someone else wrote it. Writes stop at once. */
  lost: [ReplicateError];
}

export class ReplicaLease extends EventEmitter<ReplicaLeaseEvents> {
  readonly client: LeaseCapableClient;
  readonly replica: string;
  readonly ttlMs: number;
  readonly identity: Omit<LeaseHolder, 'generation'>;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly pollMs: number;
  private state_: State = 'idle';
  private version: string | undefined;
  private acquiredAt: string | undefined;
  /** Monotonic time at which the last successful write of the record was sent. */
  private sentAt = -Infinity;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private keeper: Promise<void> | undefined;
  private readonly stopKeeper = new AbortController();
  private readonly lostController = new AbortController();
  /** The version a waiter has seen, and since when (monotonic). */
  private seen: { version: string; since: number } | undefined;
  private generationOf: () => string | undefined = () => undefined;
  /** Whether the lease could be read at least once (see acquire). */
  private everRead = false;
  /** Whether the store's conditional writes were probed (ReplicaClient.probeLease). */
  private probed = false;
  /** Renewals that threw since the last confirmed one (the store may hold one of them), and when each was sent. */
  private unconfirmed: { body: Buffer; sent: number }[] = [];

  constructor(private readonly opts: ReplicaLeaseOptions) {
    super();
    if (!supportsLease(opts.client)) {
      throw new ReplicateError(
        'LEASE_UNSUPPORTED',
        `replica ${opts.replica} (${opts.client.type}: ${opts.client.location}) has no atomic lease`,
        { details: { replica: opts.replica, type: opts.client.type } },
      );
    }
    this.client = opts.client;
    this.replica = opts.replica;
    this.ttlMs = opts.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    if (!(this.ttlMs >= MIN_LEASE_TTL_MS))
      throw new ReplicateError(
        'INVALID_ARGUMENT',
        `replica ${opts.replica}: lease-ttl must be at least ${MIN_LEASE_TTL_MS}ms, got ${this.ttlMs}`,
      );
    this.identity = {
      host: opts.identity?.host ?? hostname(),
      pid: opts.identity?.pid ?? processId,
      instance: opts.identity?.instance ?? randomBytes(8).toString('hex'),
      ...(opts.identity?.pidNamespace !== undefined ? { pidNamespace: opts.identity.pidNamespace } : {}),
    };
    this.log = opts.logger ?? nullLogger;
    this.now = opts.now ?? Date.now;
    this.pollMs = opts.pollMs ?? Math.min(500, this.ttlMs / 4);
  }

  /** Time before the TTL at which the holder stops writing (see the file comment). */
  get marginMs(): number {
    return this.ttlMs / 5;
  }

  get state(): State {
    return this.state_;
  }

  get held(): boolean {
    return this.state_ === 'held' && monotonicMs() < this.deadline();
  }

  /** Aborted when the lease is lost: in-flight writes are abandoned. */
  get lostSignal(): AbortSignal {
    return this.lostController.signal;
  }

  /** Where the record says we write (updated at each renewal). */
  setGenerationSource(fn: () => string | undefined): void {
    this.generationOf = fn;
  }

  /** Throws LEASE_LOST unless the lease is held and inside its deadline. Called before every write. */
  assertHeld(): void {
    if (this.state_ === 'held' && monotonicMs() >= this.deadline()) this.lose('not renewed in time');
    if (this.state_ !== 'held') {
      throw new ReplicateError('LEASE_LOST', `replica ${this.replica}: not writing, the lease is not held (${this.state_})`, {
        details: { replica: this.replica, location: this.client.location },
      });
    }
  }

  /** The lease as stored now (undefined: no lease object). */
  async read(signal?: AbortSignal): Promise<LeaseState | undefined> {
    return readLease(this.client, signal);
  }

  /** Whether the lease could be read at least once (an acquisition that never could is not "waiting"). */
  get looked(): boolean {
    return this.everRead;
  }

  /**
   * Takes the lease if it is free (none, released, expired by our observation, or its holder known
   * gone). Returns undefined when taken, else the lease as it stands (someone else holds it). `signal`
   * abandons the requests (a stop asked for while the store does not answer).
   */
  async tryAcquire(signal?: AbortSignal): Promise<LeaseState | undefined> {
    if (this.state_ === 'held') return undefined;
    if (this.state_ !== 'idle')
      throw new ReplicateError('LEASE_LOST', `replica ${this.replica}: a lease object cannot be acquired again once ${this.state_}`);
    if (!this.probed) {
      await this.client.probeLease?.({ signal });
      this.probed = true;
    }
    const current = await this.read(signal);
    this.everRead = true;
    let expected: string | undefined;
    let from: LeaseHolder | null | undefined;
    if (current) {
      const { record, version } = current;
      if (!this.isFree(current)) return current;
      expected = version;
      from = record.holder;
    }
    const sent = monotonicMs();
    const at = new Date(this.now()).toISOString();
    const version = await this.client.writeLease(encodeLeaseRecord(this.recordFor(at, at)), expected, {
      signal: this.requestSignal(signal),
    });
    if (version === undefined) return (await this.read(signal)) ?? current; // lost the race: look again
    this.state_ = 'held';
    this.version = version;
    this.acquiredAt = at;
    this.sentAt = sent;
    this.armDeadline();
    this.keeper = this.keep();
    const fields = { replica: this.replica, location: this.client.location, ttl: `${this.ttlMs}ms`, instance: this.identity.instance };
    if (from && from.instance !== this.identity.instance)
      this.log.warn('replica lease taken over from an instance that stopped renewing it', { ...fields, previous: describeHolder(from) });
    else this.log.info('replica lease acquired', fields);
    return undefined;
  }

  /**
   * Waits until the lease is ours, logging who holds it (once per holder). Throws ABORTED on `signal`.
   * How the waiting goes (store errors, a stop while waiting): lease-waiting.ts.
   */
  async acquire(signal?: AbortSignal): Promise<void> {
    // A store failing at the first look is retried for one TTL: an outage shorter than that does not
    // stop a holder (it renews until its deadline), nor does it stop an instance that is starting.
    const timing = { pollMs: this.pollMs, stopGraceMs: this.opts.stopGraceMs ?? LEASE_STOP_GRACE_MS, firstLookMs: this.ttlMs };
    await waitForLease(this, timing, this.log, signal);
  }

  /** Gives the lease up (a clean stop): waiters take it at once. Never throws; a failure is logged. */
  async release(): Promise<void> {
    this.stopKeeper.abort();
    await this.keeper;
    this.clearDeadline();
    if (this.state_ !== 'held') return;
    this.state_ = 'released';
    const at = new Date(this.now()).toISOString();
    try {
      const body = encodeLeaseRecord({ holder: null, acquiredAt: this.acquiredAt ?? at, renewedAt: at, releasedAt: at, ttlMs: this.ttlMs });
      const v = await this.client.writeLease(body, this.version, { signal: this.requestSignal() });
      if (v === undefined)
        this.log.warn('replica lease was not ours any more at release', { replica: this.replica, location: this.client.location });
      else this.log.info('replica lease released', { replica: this.replica, location: this.client.location });
    } catch (err) {
      this.log.warn('replica lease release failed; others take over once it expires', {
        replica: this.replica,
        location: this.client.location,
        error: describeError(err),
      });
    }
  }

  private isFree({ record, version }: LeaseState): boolean {
    if (record.holder === null) return true;
    // Ours: an acquisition of ours that the store took although its reply was lost (the write threw).
    if (record.holder.instance === this.identity.instance) return true;
    if (this.opts.holderGone?.(record.holder) === true) return true;
    const t = monotonicMs();
    if (this.seen?.version !== version) {
      this.seen = { version, since: t };
      return false;
    }
    return t - this.seen.since >= record.ttlMs;
  }

  private recordFor(acquiredAt: string, renewedAt: string): LeaseRecord {
    const generation = this.generationOf();
    return { holder: { ...this.identity, ...(generation !== undefined ? { generation } : {}) }, acquiredAt, renewedAt, ttlMs: this.ttlMs };
  }

  /**
   * For one lease write: abandoned when the lease is lost, and after a while of its own, so that a
   * request stuck on a dead connection is tried again (on a fresh one) well before the deadline. Its
   * outcome is then unknown, which the callers allow for (see the file comment).
   */
  private requestSignal(outer?: AbortSignal): AbortSignal {
    const signals = [this.lostSignal, AbortSignal.timeout(Math.max(MIN_WRITE_TIMEOUT_MS, this.ttlMs / 4))];
    return AbortSignal.any(outer ? [...signals, outer] : signals);
  }

  /**
   * After a renewal was refused: whether the stored record is one of our renewals that threw (the store
   * took it, its reply was lost). Lease records are unique per write (our instance id, and a renewal
   * time that differs between our attempts), so equal bytes mean that write of ours.
   */
  private async ownUnconfirmedWrite(): Promise<{ version: string; sent: number } | undefined> {
    if (this.unconfirmed.length === 0) return undefined;
    const stored = await this.client.readLease();
    if (!stored) return undefined;
    const mine = this.unconfirmed.find((u) => u.body.equals(stored.body));
    return mine ? { version: stored.version, sent: mine.sent } : undefined;
  }

  private deadline(): number {
    return this.sentAt + this.ttlMs - this.marginMs;
  }

  private armDeadline(): void {
    this.clearDeadline();
    const ms = Math.max(0, this.deadline() - monotonicMs());
    this.deadlineTimer = setTimeout(() => this.lose('not renewed in time'), ms);
    // The keeper's sleeps keep nobody alive either: the lease lives as long as its replication does.
    this.deadlineTimer.unref();
  }

  private clearDeadline(): void {
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
  }

  /** Renews every TTL/3; retries failures until the deadline, which `lose`s it (armDeadline's timer). */
  private async keep(): Promise<void> {
    const stop = this.stopKeeper.signal;
    let wait = this.ttlMs / 3;
    while (this.state_ === 'held' && !stop.aborted) {
      await sleepUntil(renewalDue(this.sentAt, wait, this.ttlMs), stop);
      if (this.state_ !== 'held' || stop.aborted) return;
      const sent = monotonicMs();
      const body = encodeLeaseRecord(this.recordFor(this.acquiredAt!, new Date(this.now()).toISOString()));
      let v: string | undefined;
      let answered = false;
      try {
        v = await this.client.writeLease(body, this.version, { signal: this.requestSignal() });
        answered = true;
        if (v === undefined) {
          // Refused: someone else wrote — or the store holds a renewal of ours whose reply was lost.
          const mine = await this.ownUnconfirmedWrite();
          if (this.state_ !== 'held') return;
          if (!mine) {
            this.lose('someone else wrote the lease (taken over or broken by hand)');
            return;
          }
          // Counted from when that write was sent, which is before anyone could see it.
          this.version = mine.version;
          this.sentAt = mine.sent;
          this.unconfirmed = [];
          this.armDeadline();
          wait = 0; // this renewal is still to be made
          continue;
        }
      } catch (err) {
        if (this.state_ !== 'held') return;
        if (!answered) this.unconfirmed = [...this.unconfirmed, { body, sent }].slice(-MAX_UNCONFIRMED);
        this.log.warn('replica lease renewal failed; retrying until its deadline', {
          replica: this.replica,
          location: this.client.location,
          error: describeError(err),
        });
        // Sooner than the next regular renewal: there is at most TTL - margin - TTL/3 left.
        wait = monotonicMs() - this.sentAt + Math.min(1000, this.ttlMs / 10);
        continue;
      }
      if (this.state_ !== 'held') return;
      this.version = v;
      this.sentAt = sent;
      this.unconfirmed = [];
      wait = this.ttlMs / 3;
      this.armDeadline();
    }
  }

  private lose(why: string): void {
    if (this.state_ !== 'held') return;
    this.state_ = 'lost';
    this.clearDeadline();
    this.stopKeeper.abort();
    const err = new ReplicateError(
      'LEASE_LOST',
      `replica ${this.replica}: lease lost (${why}); stopped writing to ${this.client.location}`,
      {
        details: { replica: this.replica, location: this.client.location },
      },
    );
    this.log.error('replica lease lost; stopped writing', { replica: this.replica, location: this.client.location, reason: why });
    this.lostController.abort(err);
    if (this.listenerCount('lost') > 0) this.emit('lost', err);
  }
}
