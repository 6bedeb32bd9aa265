/**
 * The `file` backend: a replica in a local directory, laid out exactly as Litestream's.
 * Writes are atomic (temp file, fsync, rename, directory fsync); createdAt is the file's mtime.
 */
import { createReadStream, type BigIntStats } from 'node:fs';
import { open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { Readable } from 'node:stream';
import { NotFoundError, ReplicateError, errnoCode, describeError } from '../errors.js';
import { ReplicaLayout, isGenerationName, parseSnapshotName, parseWalSegmentName } from '../layout.js';
import type { Pos } from '../pos.js';
import { writeFileAtomic } from '../internal/atomic-file.js';
import type { ReadBuffers } from '../internal/read-buffer-pool.js';
import { FileLeaseStore } from './file-lease.js';
import {
  CLIENT_TRANSFER,
  RECYCLE_AFTER_CHUNKS,
  OperationCounter,
  type ClientTransfer,
  type ObjectBody,
  type OperationCounts,
  type OpOptions,
  type ReplicaClient,
  type SnapshotInfo,
  type StoredLease,
  type WalSegmentInfo,
} from './replica-client.js';

export interface FileReplicaClientOptions {
  /** Absolute path of the replica root. */
  path: string;
  /** Mode for created directories; Litestream uses the database's parent dir mode, else 0700. */
  dirMode?: number;
  /** Mode for created files; Litestream uses the database file's mode, else 0600. */
  fileMode?: number;
}

const READ_CHUNK = 1024 * 1024;
/**
 * Objects up to this size (most WAL segments) are read whole into one buffer of exactly their size: a
 * stream reads 1 MiB buffers and copies a short last read into another, so a restore's thousands of
 * segments left two to three times their size as garbage (most of its peak RSS in the WAL phase).
 */
const WHOLE_READ_MAX = 4 * 1024 * 1024;

export class FileReplicaClient implements ReplicaClient {
  readonly type = 'file';
  /** writeFileAtomic writes each chunk (awaited) before it pulls the next. */
  readonly consumesBodyInOrder = true;
  readonly location: string;
  private readonly layout: ReplicaLayout;
  private readonly counts = new OperationCounter();
  private readonly lease: FileLeaseStore;

  constructor(private readonly options: FileReplicaClientOptions) {
    if (!isAbsolute(options.path)) throw new RangeError(`file replica path must be absolute: ${options.path}`);
    this.location = options.path;
    this.layout = new ReplicaLayout(options.path, join);
    this.lease = new FileLeaseStore(this.layout, {
      dirMode: options.dirMode,
      fileMode: options.fileMode,
      count: (op) => this.counts.add(op),
    });
  }

  /** The lease: versioned records written by exclusive link (see file-lease.ts). */
  readLease(): Promise<StoredLease | undefined> {
    return this.lease.read();
  }

  writeLease(body: Buffer, expected: string | undefined): Promise<string | undefined> {
    return this.lease.write(body, expected);
  }

  async generations(): Promise<string[]> {
    const entries = await this.list(this.layout.generationsDir());
    return entries
      .filter((e) => e.isDirectory() && isGenerationName(e.name))
      .map((e) => e.name)
      .sort();
  }

  async *snapshots(generation: string): AsyncIterable<SnapshotInfo> {
    const dir = this.layout.snapshotsDir(generation);
    const parsed = (await this.list(dir))
      .filter((e) => e.isFile())
      .flatMap((e) => {
        const p = parseSnapshotName(e.name);
        return p ? [{ name: e.name, index: p.index }] : [];
      })
      .sort((a, b) => a.index - b.index);
    for (const p of parsed) {
      const st = await statOrUndefined(join(dir, p.name));
      if (st) yield { generation, index: p.index, size: Number(st.size), createdAt: mtimeOf(st) };
    }
  }

  async *walSegments(generation: string): AsyncIterable<WalSegmentInfo> {
    const dir = this.layout.walDir(generation);
    const parsed = (await this.list(dir))
      .filter((e) => e.isFile())
      .flatMap((e) => {
        const p = parseWalSegmentName(e.name);
        return p ? [{ name: e.name, ...p }] : [];
      })
      .sort((a, b) => a.index - b.index || a.offset - b.offset);
    // Stat in batches: a long generation has thousands of segments.
    const BATCH = 64;
    for (let i = 0; i < parsed.length; i += BATCH) {
      const batch = parsed.slice(i, i + BATCH);
      const stats = await Promise.all(batch.map((p) => statOrUndefined(join(dir, p.name))));
      for (let j = 0; j < batch.length; j++) {
        const st = stats[j];
        const p = batch[j]!;
        if (st) yield { generation, index: p.index, offset: p.offset, size: Number(st.size), createdAt: mtimeOf(st) };
      }
    }
  }

  async writeSnapshot(generation: string, index: number, body: ObjectBody, opts?: OpOptions): Promise<SnapshotInfo> {
    const path = this.layout.snapshotPath(generation, index);
    const st = await this.write(path, body, opts);
    return { generation, index, size: Number(st.size), createdAt: mtimeOf(st) };
  }

  async writeWalSegment(pos: Pos, body: ObjectBody, opts?: OpOptions): Promise<WalSegmentInfo> {
    const path = this.layout.walSegmentPath(pos.generation, pos.index, pos.offset);
    const st = await this.write(path, body, opts);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size: Number(st.size), createdAt: mtimeOf(st) };
  }

  snapshotReader(generation: string, index: number, opts?: OpOptions): Promise<Readable> {
    return this.openReader(this.layout.snapshotPath(generation, index), opts);
  }

  walSegmentReader(pos: Pos, opts?: OpOptions): Promise<Readable> {
    return this.openReader(this.layout.walSegmentPath(pos.generation, pos.index, pos.offset), opts);
  }

  async deleteGeneration(generation: string): Promise<void> {
    await this.remove(this.layout.generationDir(generation), true);
  }

  async deleteSnapshot(generation: string, index: number): Promise<void> {
    await this.remove(this.layout.snapshotPath(generation, index), false);
  }

  async deleteWalSegments(positions: readonly Pos[]): Promise<void> {
    for (const pos of positions) {
      await this.remove(this.layout.walSegmentPath(pos.generation, pos.index, pos.offset), false);
    }
  }

  /** For a replication worker thread (see CLIENT_TRANSFER): a copy of the options, and the counter. */
  [CLIENT_TRANSFER](): ClientTransfer {
    return { options: { ...this.options }, counter: this.counts };
  }

  /** Directory listings, file writes, opens for reading and deletions. */
  requestCounts(): Readonly<OperationCounts> {
    return this.counts.read();
  }

  snapshotLocation(generation: string, index: number): string {
    return this.layout.snapshotPath(generation, index);
  }

  walSegmentLocation(pos: Pos): string {
    return this.layout.walSegmentPath(pos.generation, pos.index, pos.offset);
  }

  private list(dir: string) {
    this.counts.add('LIST');
    return readDirOrEmpty(dir);
  }

  private async write(path: string, body: ObjectBody, opts?: OpOptions) {
    this.counts.add('PUT');
    try {
      await writeFileAtomic(path, body, { dirMode: this.options.dirMode, fileMode: this.options.fileMode, signal: opts?.signal });
      return await stat(path, { bigint: true });
    } catch (err) {
      if (err instanceof ReplicateError) throw err;
      throw new ReplicateError('IO', `[file] writing ${path}: ${describeError(err)}`, { cause: err, details: { path } });
    }
  }

  private async openReader(path: string, opts?: OpOptions): Promise<Readable> {
    this.counts.add('GET');
    try {
      const handle = await open(path, 'r');
      // Read buffers no bigger than the file: a stream allocates highWaterMark bytes per read.
      const { size } = await handle.stat();
      if (opts?.recycleReadBuffers && size > READ_CHUNK * RECYCLE_AFTER_CHUNKS)
        return Readable.from(recycledReads(handle, path), { objectMode: false, highWaterMark: 1 });
      if (opts?.readBuffers)
        return Readable.from(pooledReads(handle, path, Number(size), opts.readBuffers), { objectMode: false, highWaterMark: 1 });
      if (size <= WHOLE_READ_MAX) return Readable.from([await readWhole(handle, path, Number(size))], { objectMode: false });
      return createReadStream('', { fd: handle, highWaterMark: Math.max(64 * 1024, Math.min(READ_CHUNK, size)) });
    } catch (err) {
      if (err instanceof ReplicateError) throw err;
      if (errnoCode(err) === 'ENOENT') throw new NotFoundError(`[file] object not found: ${path}`, { cause: err, details: { path } });
      throw new ReplicateError('IO', `[file] opening ${path}: ${describeError(err)}`, { cause: err, details: { path } });
    }
  }

  private async remove(path: string, recursive: boolean): Promise<void> {
    this.counts.add('DELETE');
    try {
      await rm(path, { recursive, force: true });
    } catch (err) {
      throw new ReplicateError('IO', `[file] deleting ${path}: ${describeError(err)}`, { cause: err, details: { path } });
    }
  }
}

async function readDirOrEmpty(dir: string) {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = errnoCode(err);
    // A directory not created yet is an empty replica (a first boot). A path through a file (ENOTDIR)
    // is a misconfigured or broken replica, never "no backup": start-up must not begin a new history on it.
    if (code === 'ENOENT') return [];
    throw new ReplicateError('IO', `[file] listing ${dir}: ${describeError(err)}`, { cause: err, details: { path: dir } });
  }
}

/**
 * The mtime truncated to whole milliseconds, as Go's time formatting truncates: Node's own `mtime` Date is
 * rounded, which would print 16:39:40 for a file Litestream lists at 16:39:39.9996.
 */
function mtimeOf(st: BigIntStats): Date {
  return new Date(Number(st.mtimeNs / 1_000_000n));
}

async function statOrUndefined(path: string) {
  try {
    return await stat(path, { bigint: true });
  } catch (err) {
    // Deleted between readdir and stat (retention running concurrently): not part of the listing.
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new ReplicateError('IO', `[file] stat ${path}: ${describeError(err)}`, { cause: err, details: { path } });
  }
}

/** A read of an object's file that failed midway (after it was opened). */
function readFailed(path: string, err: unknown): ReplicateError {
  return new ReplicateError('IO', `[file] reading ${path}: ${describeError(err)}`, { cause: err, details: { path } });
}

/**
 * The file's bytes in READ_CHUNK reads into a ring of RECYCLE_AFTER_CHUNKS + 1 buffers (the consumer has
 * promised to be done with a chunk before it pulls that many more): a large snapshot read allocates
 * 9 MiB once instead of a fresh 1 MiB per read for the garbage collector to find later.
 */
async function* recycledReads(handle: FileHandle, path: string): AsyncGenerator<Buffer> {
  const ring: Buffer[] = [];
  let next = 0;
  let position = 0;
  try {
    for (;;) {
      const buf = (ring[next] ??= Buffer.allocUnsafe(READ_CHUNK));
      next = (next + 1) % (RECYCLE_AFTER_CHUNKS + 1);
      const { bytesRead } = await handle.read(buf, 0, buf.length, position);
      if (bytesRead === 0) return;
      position += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  } catch (err) {
    throw readFailed(path, err);
  } finally {
    await handle.close();
  }
}

/**
 * The file's `size` bytes (its size when opened: objects are written once) read into the caller's buffers
 * (OpOptions.readBuffers), up to READ_CHUNK per call: one readv into as many pieces as that takes.
 */
async function* pooledReads(handle: FileHandle, path: string, size: number, buffers: ReadBuffers): AsyncGenerator<Buffer> {
  let position = 0;
  try {
    while (position < size) {
      const pieces: Buffer[] = [];
      for (let want = Math.min(READ_CHUNK, size - position); want > 0;) {
        const piece = buffers.take(want);
        pieces.push(piece);
        want -= piece.length;
      }
      const { bytesRead } = await handle.readv(pieces, position);
      if (bytesRead === 0) return; // shorter than its stat said: the decoder reports the truncation
      position += bytesRead;
      for (let left = bytesRead, i = 0; left > 0; i++) {
        const piece = pieces[i]!;
        yield left >= piece.length ? piece : piece.subarray(0, left);
        left -= piece.length;
      }
    }
  } catch (err) {
    throw readFailed(path, err);
  } finally {
    await handle.close();
  }
}

/** The whole (small) file in one buffer of its size; closes the handle. */
async function readWhole(handle: FileHandle, path: string, size: number): Promise<Buffer> {
  try {
    const buf = Buffer.allocUnsafe(size);
    let at = 0;
    while (at < size) {
      const { bytesRead } = await handle.read(buf, at, size - at, at);
      if (bytesRead === 0) break; // shorter than its stat said: the decoder reports the truncation
      at += bytesRead;
    }
    return buf.subarray(0, at);
  } catch (err) {
    throw readFailed(path, err);
  } finally {
    await handle.close();
  }
}
