/**
 * Which shadow WAL files stay on disk: from one index below the lowest any replica still needs (one
 * older file is kept, as Litestream does), within the shadow WAL limit (shadow-limit.ts). Apart from the
 * follow loop because it is about the files the copies leave behind, and what replicas still need of them.
 */
import type { MetaDir } from '../meta/meta-dir.js';
import type { Current } from './shadow-cursor.js';
import type { ShadowLimit } from './shadow-limit.js';

export class ShadowCleanup {
  private retainFrom: () => number | undefined = () => undefined;
  private describeBehind: () => string[] = () => [];
  /** What clean() last listed (see there). */
  private shadowListing: { key: string; olderSizes: number[] } | undefined;

  constructor(
    private readonly meta: MetaDir,
    readonly limit: ShadowLimit,
  ) {}

  /** Replicas tell the shipper the lowest shadow index they still need, and which of them are behind. */
  setRetention(fn: () => number | undefined, behind?: () => string[]): void {
    this.retainFrom = fn;
    if (behind) this.describeBehind = behind;
  }

  /**
   * Removes the shadow files of `cur`'s generation that no replica needs any more, and measures the rest
   * against the limit: returns the reason for a new generation when it is reached.
   */
  async clean(cur: Current): Promise<string | undefined> {
    const needed = this.retainFrom();
    // The directory is listed (and the older files' sizes read) only when something that decides what is
    // in it changed: the generation, the index being written, or how far every replica got. Between those
    // only the current file grows, so every other sync costs one stat instead of a listing and a stat per
    // file (a listing at every tick costs a tenth of the replicator's CPU under a steady write load).
    const key = `${cur.generation}/${cur.index}/${needed ?? '-'}`;
    if (this.shadowListing?.key !== key) {
      // One older file is kept, as Litestream does. One directory listing serves both steps.
      const left =
        needed !== undefined
          ? await this.meta.removeShadowsBelow(cur.generation, needed - 1)
          : await this.meta.shadowIndexes(cur.generation);
      const older = left.filter((i) => i !== cur.index);
      const olderSizes = await Promise.all(older.map(async (i) => (await this.meta.shadowSize(cur.generation, i)) ?? 0));
      this.shadowListing = { key, olderSizes };
    }
    // The current file is what the cursor copied into it (a file gone is found by the next copy).
    const sizes = [...this.shadowListing.olderSizes, cur.size];
    return this.limit.check(cur.generation, sizes, this.describeBehind);
  }
}
