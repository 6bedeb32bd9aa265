/**
 * What the s3, gcs and abs backends share: turning a store's object listing into Litestream positions,
 * and addressing snapshots and segments by key. A backend supplies the store's own calls (list the
 * objects under a prefix, delete keys) and its URL scheme for messages.
 */
import { posix } from 'node:path';
import { parseSnapshotName, parseWalSegmentName, type ReplicaLayout } from '../layout.js';
import type { Pos } from '../pos.js';
import type { OpOptions, SnapshotInfo, WalSegmentInfo } from './replica-client.js';

export interface StoredObject {
  readonly key: string;
  /** Stored (compressed) size in bytes. */
  readonly size: number;
  /** The store's timestamp Litestream uses for this backend. */
  readonly createdAt: Date;
}

export abstract class ObjectStoreClient {
  protected abstract readonly layout: ReplicaLayout;
  /** `s3`, `gs` or `abs`: the scheme of the `scheme://bucket/key` form in messages. */
  protected abstract readonly scheme: string;
  protected abstract readonly bucketName: string;

  /** The objects under a snapshot or WAL directory (`prefix` ends in `/`), paged to the end. */
  protected abstract listObjects(prefix: string, opts?: OpOptions): Promise<StoredObject[]>;
  /** Deletes keys; a key that is not there is not an error. */
  protected abstract deleteKeys(keys: string[], opts?: OpOptions): Promise<void>;

  async *snapshots(generation: string, opts?: OpOptions): AsyncIterable<SnapshotInfo> {
    const out: SnapshotInfo[] = [];
    for (const o of await this.listObjects(`${this.layout.snapshotsDir(generation)}/`, opts)) {
      const p = parseSnapshotName(posix.basename(o.key));
      if (p) out.push({ generation, index: p.index, size: o.size, createdAt: o.createdAt });
    }
    yield* out.sort((a, b) => a.index - b.index);
  }

  async *walSegments(generation: string, opts?: OpOptions): AsyncIterable<WalSegmentInfo> {
    const out: WalSegmentInfo[] = [];
    for (const o of await this.listObjects(`${this.layout.walDir(generation)}/`, opts)) {
      const p = parseWalSegmentName(posix.basename(o.key));
      if (p) out.push({ generation, index: p.index, offset: p.offset, size: o.size, createdAt: o.createdAt });
    }
    yield* out.sort((a, b) => a.index - b.index || a.offset - b.offset);
  }

  async deleteSnapshot(generation: string, index: number, opts?: OpOptions): Promise<void> {
    await this.deleteKeys([this.layout.snapshotPath(generation, index)], opts);
  }

  async deleteWalSegments(positions: readonly Pos[], opts?: OpOptions): Promise<void> {
    await this.deleteKeys(
      positions.map((p) => this.layout.walSegmentPath(p.generation, p.index, p.offset)),
      opts,
    );
  }

  snapshotLocation(generation: string, index: number): string {
    return `${this.scheme}://${this.bucketName}/${this.layout.snapshotPath(generation, index)}`;
  }

  walSegmentLocation(pos: Pos): string {
    return `${this.scheme}://${this.bucketName}/${this.layout.walSegmentPath(pos.generation, pos.index, pos.offset)}`;
  }
}
