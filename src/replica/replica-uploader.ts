/**
 * The uploads of one replica (Litestream's replica Sync): follows the shipper's position and uploads what
 * is new — a snapshot at the start of a generation, then WAL segments named by their exact start offset
 * (Litestream's layout, so Litestream can restore and resume them). The position lives in memory and is
 * recomputed from the remote after a restart or any error (the listing is the source of truth), which is
 * also how a generation started by Litestream is resumed. This module alone moves the replica's
 * position; when to sync is replica-monitor.ts's, what runs around it is Replica's (replica.ts).
 */
import type { EventEmitter } from 'node:events';
import { open } from 'node:fs/promises';
import { collect, type ReplicaClient, type SnapshotInfo } from '../client/replica-client.js';
import { describeError, errnoCode, isReplicateError, ReplicateError } from '../errors.js';
import { monotonicMs } from '../internal/clock.js';
import { reportError } from '../internal/report-error.js';
import { SerialQueue } from '../internal/serial-queue.js';
import { formatHex8 } from '../layout.js';
import type { Logger } from '../logger.js';
import { comparePos, formatPos, type Pos } from '../pos.js';
import type { WalShipper } from '../shipper/wal-shipper.js';
import { WAL_HEADER_SIZE, frameAlign, parseWalHeader } from '../sqlite/wal-format.js';
import type { ObjectCodec } from './object-codec.js';
import type { ReplicaEvents } from './replica-options.js';
import { remoteEnd, uploadShadowSegment, type RemoteEnd } from './segment-io.js';

/** Segment ends remembered for a replica that encrypts but cannot decrypt (see uploadedEnds). */
const MAX_REMEMBERED_ENDS = 64;
/** Snapshot positions remembered (see snapshotsTaken): only the current index's can matter. */
const MAX_REMEMBERED_SNAPSHOTS = 16;

/** The key of a snapshot in snapshotsTaken. */
function snapshotKey(generation: string, index: number): string {
  return `${generation}/${index}`;
}

/** What the uploader is given by its Replica. */
export interface UploaderContext {
  name: string;
  client: ReplicaClient;
  log: Logger;
  /** Wall time (ms since the epoch), for the last upload's time. */
  now: () => number;
  /** How objects are encoded (the Replica makes it once). */
  codec(): Promise<ObjectCodec>;
  /** Where 'snapshot', 'segment' and 'error' go: the Replica itself. */
  events: EventEmitter<ReplicaEvents>;
}

/** Counters for monitoring (see Replica.stats()): plain numbers, incremented on the way. */
export interface UploadCounters {
  walBytes: number;
  putBytes: number;
  getBytes: number;
  lastUploadAt: number | undefined;
}

export class ReplicaUploader {
  private readonly name: string;
  private readonly client: ReplicaClient;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly events: EventEmitter<ReplicaEvents>;
  readonly counters: UploadCounters = { walBytes: 0, putBytes: 0, getBytes: 0, lastUploadAt: undefined };
  /** The error of the last failed sync (or the lease's loss), cleared by a successful sync. */
  lastError: unknown;
  private readonly firstSync: { promise: Promise<void>; resolve: () => void };
  private position_: Pos | undefined;
  /**
   * The last position known to be in the store: unlike `position`, kept across a failed sync (which
   * makes the next one recompute it from the remote), so that lag can be measured while the store is
   * unreachable.
   */
  private confirmed: Pos | undefined;
  /** When the last sync finished, on the monotonic clock. */
  private lastSyncAt_ = -Infinity;
  /**
   * Uploads and snapshots, one at a time in the order asked (whatever the outcome of the one before): a
   * snapshot never races the position recovery of a sync.
   */
  private readonly uploads = new SerialQueue();
  /**
   * Where each segment uploaded by this process ends, by its name: for a replica with age recipients but
   * no identities, which cannot decode its own last segment to find where it ends after a failed sync.
   * (After a restart the map is empty, and a new generation starts instead; see syncOnce.)
   */
  private readonly uploadedEnds = new Map<string, number>();
  /**
   * Where the snapshots this process wrote were taken, by generation and index: a snapshot holds the
   * database at that position, not at the start of its index, so a restore to an earlier offset of the
   * same index cannot use it (validation pins again then; see validate.ts).
   */
  private readonly snapshotsTaken = new Map<string, Pos>();

  constructor(
    private readonly shipper: WalShipper,
    private readonly ctx: UploaderContext,
  ) {
    this.name = ctx.name;
    this.client = ctx.client;
    this.log = ctx.log;
    this.now = ctx.now;
    this.events = ctx.events;
    let resolveFirst!: () => void;
    this.firstSync = { promise: new Promise<void>((r) => (resolveFirst = r)), resolve: () => resolveFirst() };
  }

  /** The position a snapshot this process wrote at `index` of `generation` was taken at, if it wrote one. */
  snapshotTakenAt(generation: string, index: number): Pos | undefined {
    return this.snapshotsTaken.get(snapshotKey(generation, index));
  }

  /** Resolves after the first successful sync (the generation is known then). */
  get synced(): Promise<void> {
    return this.firstSync.promise;
  }

  private codec(): Promise<ObjectCodec> {
    return this.ctx.codec();
  }

  private get position(): Pos | undefined {
    return this.position_;
  }

  private set position(pos: Pos | undefined) {
    this.position_ = pos;
    if (pos !== undefined) this.confirmed = pos;
  }

  /** When the last sync finished, on the monotonic clock (-Infinity before the first). */
  get lastSyncAt(): number {
    return this.lastSyncAt_;
  }

  /** What this replica holds, as far as it knows (undefined until the first sync). */
  pos(): Pos | undefined {
    return this.position;
  }

  /** The last position known to be in the store (kept across failed syncs; undefined until known). */
  confirmedPos(): Pos | undefined {
    return this.confirmed;
  }

  /** Uploads everything the shipper has that this replica lacks. In upload order; throws on failure. */
  sync(): Promise<void> {
    return this.uploads.run(() => this.syncOnce());
  }

  private async syncOnce(): Promise<void> {
    try {
      let db = this.shipper.pos();
      if (!db) return;
      if (!this.position || this.position.generation !== db.generation) {
        try {
          this.position = await this.startPosition(db.generation);
        } catch (err) {
          if (!isReplicateError(err, 'AGE_IDENTITY')) throw err;
          db = await this.unreadableEnd(db.generation, err);
          this.position = await this.startPosition(db.generation);
        }
        this.log.debug('replica position', { replica: this.name, position: formatPos(this.position) });
      }
      // Up to the shipper's position at the start, not its moving end: under writes faster than the
      // uploads, chasing the end would never return (and nor would sync() or validate()). uploadNext()
      // runs at least once, so its checks of the remote against local state always happen.
      while ((await this.uploadNext()) && comparePos(this.position, db) < 0);
      this.lastSyncAt_ = monotonicMs();
      if (this.lastError !== undefined) this.log.info('replica recovered', { replica: this.name, position: formatPos(this.position) });
      this.lastError = undefined;
      this.firstSync.resolve();
    } catch (err) {
      this.position = undefined; // recompute from the remote next time
      this.lastError = err;
      this.log.error('replica sync failed', { replica: this.name, error: describeError(err) });
      reportError(this.events, err); // also thrown and logged
      throw err;
    }
  }

  /** Where uploads of `generation` start: after the remote's end, with a first snapshot if it has none. */
  private async startPosition(generation: string): Promise<Pos> {
    const snapshots = await collect(this.client.snapshots(generation));
    if (snapshots.length === 0) await this.takeSnapshot(true); // already running in `uploads`
    return this.resumePos(generation);
  }

  /**
   * The remote's last segment of the current generation is age-encrypted and this replica cannot open it
   * (no identities, or none that matches): where the remote ends cannot be known, and uploading from a
   * guess could leave a hole or overlap. A new generation (with a snapshot) is always safe; returns the
   * shipper's position in it. Litestream fails every sync instead (docs/compatibility.md, "age encryption").
   */
  private async unreadableEnd(generation: string, err: ReplicateError): Promise<Pos> {
    const reason = `replica ${this.name} cannot read its last wal segment of generation ${generation} to find where it ends (age: ${err.details.reason === 'missing' ? 'no identities' : 'no matching identity'})`;
    this.log.warn(
      'replica cannot continue its generation: its last wal segment is age-encrypted and cannot be decrypted here; starting a new generation (configure age.identities to continue generations across restarts)',
      {
        replica: this.name,
        generation,
        object: typeof err.details.object === 'string' ? err.details.object : '',
      },
    );
    this.shipper.requestNewGeneration(generation, reason);
    await this.shipper.sync();
    const db = this.shipper.pos();
    if (!db || db.generation === generation)
      throw new ReplicateError('IO', `replica ${this.name}: ${reason}; no new generation could be started`, { cause: err });
    return db;
  }

  /**
   * Writes a snapshot of the database at the shipper's current index — unless this replica already
   * holds one there: an object once written is never rewritten with a later time (a restore at a time
   * between the two would find no snapshot at or before it). Returns the existing one then, so that
   * retention keeps it.
   */
  async snapshot(): Promise<SnapshotInfo> {
    // One at a time with uploads: two uploads from one position would write one segment name twice.
    return this.uploads.run(() => this.takeSnapshot(true));
  }

  /** `uploadFirst`: bring the replica's segments up to the snapshot's point first (see below). */
  private async takeSnapshot(uploadFirst: boolean): Promise<SnapshotInfo> {
    return this.shipper.withSnapshotLock(async (pos, image) => {
      const snapshots = await collect(this.client.snapshots(pos.generation));
      const existing = snapshots.find((s) => s.index === pos.index);
      if (existing) {
        this.log.info('snapshot skipped: the replica already holds one at this index', {
          replica: this.name,
          generation: pos.generation,
          index: formatHex8(pos.index),
          created: existing.createdAt.toISOString(),
        });
        return existing;
      }
      // Segments first, up to `pos`: a point-in-time restore that picks this snapshot replays only the
      // segments uploaded by then, and replaying older frames over a newer page image would give a state
      // that never existed. (A generation's first snapshot has no segments to come before it.)
      if (uploadFirst && snapshots.length > 0) {
        if (this.position?.generation !== pos.generation) this.position = await this.resumePos(pos.generation);
        while (comparePos(this.position, pos) < 0 && (await this.uploadNext()));
      }
      const started = monotonicMs();
      // The database exactly at `pos`, read through the shipper's one descriptor (opening and closing
      // another would drop SQLite's locks).
      const source = image();
      try {
        const info = await this.client.writeSnapshot(
          pos.generation,
          pos.index,
          (await this.codec()).encode(source, { reuseOutput: this.client.consumesBodyInOrder === true }),
        );
        this.counters.putBytes += info.size;
        this.counters.lastUploadAt = this.now();
        this.snapshotsTaken.set(snapshotKey(pos.generation, pos.index), pos);
        if (this.snapshotsTaken.size > MAX_REMEMBERED_SNAPSHOTS) this.snapshotsTaken.delete(this.snapshotsTaken.keys().next().value!);
        this.log.info('snapshot written', {
          replica: this.name,
          position: formatPos(pos),
          elapsed: `${Math.round(monotonicMs() - started)}ms`,
          sz: info.size,
        });
        this.events.emit('snapshot', info);
        return info;
      } finally {
        await source.return(undefined);
      }
    });
  }

  /**
   * Where the remote's `generation` ends (Litestream's calcPos): after its last segment, decoded to learn
   * its length, or at the snapshot's index when it has no segment (segment-io.ts).
   */
  async calcPos(generation: string): Promise<Pos> {
    return (await this.remoteEnd(generation)).pos;
  }

  private async remoteEnd(generation: string): Promise<RemoteEnd> {
    const codec = await this.codec();
    return remoteEnd(this.client, codec, this.name, generation, {
      onRead: (n) => (this.counters.getBytes += n),
      knownEnd: codec.encrypts && !codec.decrypts ? (s) => this.uploadedEnds.get(formatPos(s)) : undefined,
    });
  }

  /**
   * Where uploads of `generation` go on from: the remote's end, once its last bytes are found in the
   * local shadow WAL just before that end. After a power cut took a tail the replica already holds, the
   * application writes other transactions at the same offsets; once they reach past the remote's end,
   * offsets alone look continuous, and uploading from there would splice two histories into one index
   * (a restore fails its checksums, or stops at the splice). Litestream does not look: see
   * docs/compatibility.md.
   */
  private async resumePos(generation: string): Promise<Pos> {
    const { pos, tail } = await this.remoteEnd(generation);
    // No tail: the end is a snapshot's index (nothing of it uploaded as segments yet), or known without
    // reading (see remoteEnd). Neither Litestream nor we write empty segments.
    if (!tail || tail.length === 0) return pos;
    const path = this.shipper.meta.shadowWalPath(pos.generation, pos.index);
    const local = Buffer.alloc(tail.length);
    let got = 0;
    try {
      const h = await open(path, 'r');
      try {
        // Until the end of the file: one read may return less on a network or FUSE file system, and
        // "shorter" must mean the file is shorter.
        while (got < local.length) {
          const { bytesRead } = await h.read(local, got, local.length - got, pos.offset - tail.length + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
      } finally {
        await h.close();
      }
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return pos; // an index cleaned up or lost: uploadNext() decides
      throw err;
    }
    // Shorter: the local shadow WAL lost bytes the replica holds (it only ever uploads durable ones, and
    // a shadow file never shrinks below them). Checked here too, not only by uploadNext(): the
    // application may write them again between the two, which only the bytes would then show.
    if (got < local.length)
      return this.diverged(pos, `the remote ends at ${formatPos(pos)}, past the local shadow wal's end ${pos.offset - tail.length + got}`);
    if (!local.equals(tail))
      return this.diverged(
        pos,
        `the remote's last ${tail.length} bytes before ${formatPos(pos)} differ from the local shadow wal's (a local tail was lost, and other transactions were written in its place)`,
      );
    return pos;
  }

  /** Uploads the next segment, or moves to the next index; false when there is nothing to do. */
  private async uploadNext(): Promise<boolean> {
    const pos = this.position!;
    // Only what is durable locally: a power cut must never leave the replica ahead of the shadow WAL.
    const db = await this.shipper.durablePos();
    if (!db || db.generation !== pos.generation) return false;
    const path = this.shipper.meta.shadowWalPath(pos.generation, pos.index);
    let size: number;
    let pageSize: number;
    try {
      ({ size, pageSize } = await open(path, 'r').then(async (h) => {
        try {
          const header = Buffer.alloc(WAL_HEADER_SIZE);
          await h.read(header, 0, WAL_HEADER_SIZE, 0);
          // The shadow file's own page size (the shipper's is unknown while it reopens the database).
          return { size: (await h.stat()).size, pageSize: parseWalHeader(header, `shadow wal ${path}`).pageSize };
        } finally {
          await h.close();
        }
      }));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        // The restored index of a generation continued after a restore: this replica holds all of it (the
        // shipper checked that it ends exactly here), and the shipper's WAL goes on at the next index.
        const from = this.shipper.restoredFrom();
        if (from && comparePos(from, pos) === 0 && db.index > pos.index) {
          this.position = { generation: pos.generation, index: pos.index + 1, offset: 0 };
          return true;
        }
        if (db.index > pos.index) return this.resnapshot(pos);
        if (db.index < pos.index)
          return this.diverged(
            pos,
            `the remote reaches wal index ${formatHex8(pos.index)}, past the local shadow wal's last index ${formatHex8(db.index)}`,
          );
        throw new ReplicateError(
          'IO',
          `replica ${this.name}: shadow wal ${formatHex8(pos.index)} of generation ${pos.generation} is gone; resynchronising`,
        );
      }
      throw err;
    }
    // The current index grows while we read: only its published (committed) length may be uploaded.
    let end = frameAlign(size, pageSize);
    if (db.index === pos.index) end = Math.min(end, db.offset);
    if (pos.offset < end) {
      await this.uploadSegment(path, pos, end, pageSize);
      this.position = { ...pos, offset: end };
      return true;
    }
    if (pos.offset > end) return this.diverged(pos, `the remote ends at ${formatPos(pos)}, past the local shadow wal's end ${end}`);
    if (db.index > pos.index) {
      this.position = { generation: pos.generation, index: pos.index + 1, offset: 0 };
      return true;
    }
    return false;
  }

  /**
   * The shadow WAL index this replica needs next is gone locally (removed by cleanup while the remote
   * was further on — its newest segments were lost since — or lost with the meta directory): the
   * remote's chain cannot be continued from local state. A new snapshot at the shipper's current index
   * starts a chain that can; nothing committed is lost, point-in-time restores inside the gap are.
   */
  private async resnapshot(pos: Pos): Promise<boolean> {
    this.log.warn(
      'replica cannot continue its chain: the shadow wal it needs next is gone locally; taking a new snapshot at the current index',
      {
        replica: this.name,
        position: formatPos(pos),
        missing: `${pos.generation}/${formatHex8(pos.index)}`,
        current: formatPos(this.shipper.pos()),
      },
    );
    const info = await this.takeSnapshot(false); // the chain is broken: nothing to upload first
    if (info.generation !== pos.generation || info.index <= pos.index) {
      throw new ReplicateError(
        'IO',
        `replica ${this.name}: taking a snapshot past missing shadow wal ${formatHex8(pos.index)}: the snapshot is at ${info.generation}/${formatHex8(info.index)}`,
      );
    }
    this.position = await this.resumePos(pos.generation);
    return true;
  }

  /**
   * The remote holds bytes of this generation that local state does not (another replicator writes to
   * the same replica, or a local tail was lost in a crash): the lineage diverged and cannot continue.
   * Asks the shipper for a new generation (started before this returns) and fails this sync with a
   * clear error; the next sync snapshots the new generation.
   */
  private async diverged(pos: Pos, detail: string): Promise<never> {
    const reason = `replica ${this.name} diverged from local state: ${detail}`;
    this.log.error(
      'replica diverged from local state: another replicator writes to it, or a local tail was lost; starting a new generation',
      {
        replica: this.name,
        position: formatPos(pos),
        detail,
      },
    );
    this.shipper.requestNewGeneration(pos.generation, reason);
    await this.shipper.sync();
    throw new ReplicateError(
      'REPLICA_DIVERGED',
      `replica ${this.name}: uploading generation ${pos.generation}: ${detail}; a new generation was started`,
      {
        details: { position: formatPos(pos), newGeneration: this.shipper.pos()?.generation },
      },
    );
  }

  private async uploadSegment(path: string, pos: Pos, end: number, pageSize: number): Promise<void> {
    const started = monotonicMs();
    const codec = await this.codec();
    if (codec.encrypts && !codec.decrypts) {
      // Before the upload: a write that reaches the store but fails on the way back still ends here.
      this.uploadedEnds.set(formatPos(pos), end);
      if (this.uploadedEnds.size > MAX_REMEMBERED_ENDS) this.uploadedEnds.delete(this.uploadedEnds.keys().next().value!);
    }
    const info = await uploadShadowSegment(this.client, codec, this.name, path, pos, end, pageSize);
    this.counters.walBytes += end - pos.offset;
    this.counters.putBytes += info.size;
    this.counters.lastUploadAt = this.now();
    // Field names as Litestream's log line (sz = uncompressed bytes), so the same tooling reads both.
    this.log.debug('wal segment written', {
      replica: this.name,
      position: formatPos(pos),
      elapsed: `${Math.round(monotonicMs() - started)}ms`,
      sz: end - pos.offset,
    });
    this.events.emit('segment', info);
  }
}
