/**
 * One replica destination: follows the shipper's position and uploads what is new — a snapshot at the
 * start of a generation, then WAL segments named by their exact start offset (Litestream's layout, so
 * Litestream can restore and resume them). The position lives in memory and is recomputed from the
 * remote after a restart or any error (the listing is the source of truth), which is also how a
 * generation started by Litestream is resumed.
 */
import { EventEmitter } from 'node:events';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { collect, type ReplicaClient, type SnapshotInfo, type WalSegmentInfo } from '../client/replica-client.js';
import { describeError, errnoCode, ReplicateError } from '../errors.js';
import { decodeLz4Frame, encodeLz4Frame } from '../internal/lz4-frame.js';
import { formatHex8 } from '../layout.js';
import { nullLogger, type Logger } from '../logger.js';
import { comparePos, formatPos, type Pos } from '../pos.js';
import type { WalShipper } from '../shipper/wal-shipper.js';
import { WAL_HEADER_SIZE, frameAlign, frameSize, parseWalHeader } from '../sqlite/wal-format.js';

export interface ReplicaOptions {
  name: string;
  client: ReplicaClient;
  /** Least time between two uploads under load (default 1 s); an upload after a quiet period starts at once. */
  syncIntervalMs?: number;
  logger?: Logger;
}

const READ_CHUNK = 1024 * 1024;
const MAX_BACKOFF_MS = 30_000;

export class Replica extends EventEmitter {
  readonly name: string;
  readonly client: ReplicaClient;
  private readonly syncIntervalMs: number;
  private readonly log: Logger;
  private position: Pos | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  private lastSyncAt = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private lastError: unknown;

  constructor(
    private readonly shipper: WalShipper,
    opts: ReplicaOptions,
  ) {
    super();
    this.name = opts.name;
    this.client = opts.client;
    this.syncIntervalMs = opts.syncIntervalMs ?? 1000;
    this.log = opts.logger ?? nullLogger;
    shipper.on('position', () => this.wake?.());
  }

  /** What this replica holds, as far as it knows (undefined until the first sync). */
  pos(): Pos | undefined {
    return this.position;
  }

  /** The error of the last failed sync, cleared by a successful one. */
  get error(): unknown {
    return this.lastError;
  }

  start(): void {
    this.running ??= this.loop();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      await this.waitForWork();
      if (this.stopped) break;
      const wait = this.lastSyncAt + this.syncIntervalMs - Date.now();
      if (wait > 0) await this.sleep(wait);
      if (this.stopped) break;
      try {
        await this.sync();
        failures = 0;
      } catch (err) {
        failures++;
        await this.sleep(Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(failures, 7)));
      }
    }
  }

  private behind(): boolean {
    const db = this.shipper.pos();
    return db !== undefined && (this.position === undefined || comparePos(this.position, db) < 0);
  }

  private waitForWork(): Promise<void> {
    if (this.behind()) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
    });
  }

  /** Sleeps, unless stopped; position changes do not shorten the sync interval. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.stopWake = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.stopWake = done;
    });
  }

  private stopWake: (() => void) | undefined;

  /** Uploads everything the shipper has that this replica lacks. Serialized; throws on failure. */
  sync(): Promise<void> {
    const run = this.queue.then(() => this.syncOnce());
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async syncOnce(): Promise<void> {
    try {
      const db = this.shipper.pos();
      if (!db) return;
      if (!this.position || this.position.generation !== db.generation) {
        const snapshots = await collect(this.client.snapshots(db.generation));
        if (snapshots.length === 0) await this.snapshot();
        this.position = await this.calcPos(db.generation);
        this.log.debug('replica position', { replica: this.name, position: formatPos(this.position) });
      }
      while (await this.uploadNext());
      this.lastSyncAt = Date.now();
      if (this.lastError !== undefined) this.log.info('replica recovered', { replica: this.name, position: formatPos(this.position) });
      this.lastError = undefined;
    } catch (err) {
      this.position = undefined; // recompute from the remote next time
      this.lastError = err;
      this.log.error('replica sync failed', { replica: this.name, error: describeError(err) });
      // An 'error' event with no listener would throw (EventEmitter's rule); errors are also thrown and logged.
      if (this.listenerCount('error') > 0) this.emit('error', err);
      throw err;
    }
  }

  /** Writes a snapshot of the database at the shipper's current index. */
  async snapshot(): Promise<SnapshotInfo> {
    return this.shipper.withSnapshotLock(async (pos) => {
      const started = Date.now();
      const source = createReadStream(this.shipper.dbPath, { highWaterMark: READ_CHUNK });
      try {
        const info = await this.client.writeSnapshot(pos.generation, pos.index, encodeLz4Frame(source));
        this.log.info('snapshot written', { replica: this.name, position: formatPos(pos), elapsed: `${Date.now() - started}ms`, sz: info.size });
        this.emit('snapshot', info);
        return info;
      } finally {
        source.destroy();
      }
    });
  }

  /** Spec §6.3: resume after the last segment (decoded to learn its length), or at the snapshot's index. */
  private async calcPos(generation: string): Promise<Pos> {
    const snapshots = await collect(this.client.snapshots(generation));
    if (snapshots.length === 0) throw new ReplicateError('NO_BACKUPS', `replica ${this.name}: no snapshot available in generation ${generation}`);
    const snapshotIndex = Math.max(...snapshots.map((s) => s.index));
    const segments = await collect(this.client.walSegments(generation));
    let last: WalSegmentInfo | undefined;
    for (const s of segments) if (!last || s.index > last.index || (s.index === last.index && s.offset > last.offset)) last = s;
    if (!last || last.index < snapshotIndex) return { generation, index: snapshotIndex, offset: 0 };
    let length = 0;
    const reader = await this.client.walSegmentReader(last);
    for await (const chunk of decodeLz4Frame({ label: this.client.walSegmentLocation(last) })(reader)) length += chunk.length;
    return { generation, index: last.index, offset: last.offset + length };
  }

  /** Uploads the next segment, or moves to the next index; false when there is nothing to do. */
  private async uploadNext(): Promise<boolean> {
    const pos = this.position!;
    const db = this.shipper.pos();
    if (!db || db.generation !== pos.generation) return false;
    const path = this.shipper.meta.shadowWalPath(pos.generation, pos.index);
    let size: number;
    try {
      size = (await open(path, 'r').then(async (h) => {
        try {
          return (await h.stat()).size;
        } finally {
          await h.close();
        }
      }));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        throw new ReplicateError('IO', `replica ${this.name}: shadow wal ${formatHex8(pos.index)} of generation ${pos.generation} is gone; resynchronising`);
      }
      throw err;
    }
    const pageSize = this.shipper.pageSize ?? 4096;
    // The current index grows while we read: only its published (committed) length may be uploaded.
    let end = frameAlign(size, pageSize);
    if (db.index === pos.index) end = Math.min(end, db.offset);
    if (pos.offset < end) {
      await this.uploadSegment(path, pos, end, pageSize);
      this.position = { ...pos, offset: end };
      return true;
    }
    if (pos.offset > end) {
      throw new ReplicateError('IO', `replica ${this.name}: position ${formatPos(pos)} is past the shadow wal's end ${end}; resynchronising`);
    }
    if (db.index > pos.index) {
      this.position = { generation: pos.generation, index: pos.index + 1, offset: 0 };
      return true;
    }
    return false;
  }

  private async uploadSegment(path: string, pos: Pos, end: number, pageSize: number): Promise<void> {
    const started = Date.now();
    const handle = await open(path, 'r');
    try {
      const header = Buffer.allocUnsafe(WAL_HEADER_SIZE);
      await handle.read(header, 0, WAL_HEADER_SIZE, 0);
      const h = parseWalHeader(header, `shadow wal ${path}`);
      const fsize = frameSize(pageSize);
      const replica = this.name;
      async function* bytes(): AsyncGenerator<Buffer> {
        let at = pos.offset;
        while (at < end) {
          // Chunks end on frame boundaries (the first one of a file also holds the 32-byte header).
          const head = at === 0 ? WAL_HEADER_SIZE : 0;
          const want = Math.min(end - at, head + Math.max(1, Math.floor(READ_CHUNK / fsize)) * fsize);
          const buf = Buffer.allocUnsafe(want);
          const { bytesRead } = await handle.read(buf, 0, want, at);
          if (bytesRead !== want) throw new ReplicateError('IO', `replica ${replica}: short read of ${path} at ${at}`);
          // Every frame must carry this cycle's salts: a segment never mixes two WAL cycles.
          for (let f = head; f + fsize <= want; f += fsize) {
            if (buf.readUInt32BE(f + 8) !== h.salt1 || buf.readUInt32BE(f + 12) !== h.salt2) {
              throw new ReplicateError('INVALID_WAL', `replica ${replica}: salt mismatch in ${path} at offset ${at + f}`);
            }
          }
          yield buf;
          at += want;
        }
      }
      const info = await this.client.writeWalSegment(pos, encodeLz4Frame(bytes()));
      // Field names as Litestream's log line (sz = uncompressed bytes), so the same tooling reads both.
      this.log.debug('wal segment written', { replica: this.name, position: formatPos(pos), elapsed: `${Date.now() - started}ms`, sz: end - pos.offset });
      this.emit('segment', info);
    } finally {
      await handle.close();
    }
  }

  /** Stops the background loop (the caller runs a final sync). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    this.stopWake?.();
    await this.running;
  }
}
