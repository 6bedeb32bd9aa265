/**
 * When each stretch of the shadow WAL was copied: what replica lag is measured from. A replica's lag is
 * the age of the oldest committed change it does not hold yet, so for a replica at position P it is the
 * age of the first mark past P (a mark says "everything up to this position was copied at this time").
 * The copy follows the commit within milliseconds (file notifications), so a mark's time stands for the
 * commit's.
 *
 * The marks live in preallocated typed arrays: recording one is a few number writes (no allocation on
 * the shipper's path). Marks every replica has passed are dropped (`trimThrough`), so while replicas keep
 * up only a handful are kept. While one is down the marks pile up; when the ring is full, neighbouring
 * marks are merged two by two, each pair keeping its earlier time: a lag read from a merged mark can only
 * be too high (by at most the time the pair spans), never too low, and the oldest missing change of a
 * replica that has not moved keeps its exact time.
 *
 * Positions of different generations are ordered by when this process first saw the generation (names
 * do not order lineages in time). A position of a generation this timeline never saw (before this
 * process started, or not known yet) is before every mark.
 */
import type { Pos } from '../pos.js';

const DEFAULT_CAPACITY = 1024;

export class ChangeTimeline {
  private readonly capacity: number;
  private readonly seq: Float64Array;
  private readonly index: Float64Array;
  private readonly offset: Float64Array;
  private readonly at: Float64Array;
  /** Ring: `head` is the oldest mark, `size` marks from there. */
  private head = 0;
  private size = 0;
  /** Generation name → the order this timeline first saw it in. */
  private readonly generations = new Map<string, number>();
  private nextSeq = 0;

  constructor(capacity = DEFAULT_CAPACITY) {
    // An even capacity so that merging two by two empties exactly half the ring.
    this.capacity = Math.max(2, capacity + (capacity % 2));
    this.seq = new Float64Array(this.capacity);
    this.index = new Float64Array(this.capacity);
    this.offset = new Float64Array(this.capacity);
    this.at = new Float64Array(this.capacity);
  }

  /** Marks held (for tests). */
  get length(): number {
    return this.size;
  }

  /** Everything up to `pos` was copied at `atMs` (monotonic). Positions only move forward. */
  record(pos: Pos, atMs: number): void {
    let seq = this.generations.get(pos.generation);
    if (seq === undefined) {
      seq = this.nextSeq++;
      this.generations.set(pos.generation, seq);
      this.forgetOldGenerations();
    }
    if (this.size > 0) {
      const last = this.slot(this.size - 1);
      if (this.seq[last] === seq && this.index[last] === pos.index && this.offset[last] === pos.offset) return;
    }
    if (this.size === this.capacity) this.halve();
    const i = this.slot(this.size);
    this.seq[i] = seq;
    this.index[i] = pos.index;
    this.offset[i] = pos.offset;
    this.at[i] = atMs;
    this.size++;
  }

  /**
   * Drops the marks every one of `positions` (the replicas') is at or past: nobody needs their time any
   * more. Nothing is dropped while a position is unknown.
   */
  trimToSlowest(positions: readonly (Pos | undefined)[]): void {
    if (positions.length === 0) return;
    let min: { seq: number; index: number; offset: number } | undefined;
    for (const p of positions) {
      const seq = p === undefined ? undefined : this.generations.get(p.generation);
      if (p === undefined || seq === undefined) return;
      if (!min || (seq - min.seq || p.index - min.index || p.offset - min.offset) < 0) min = { seq, index: p.index, offset: p.offset };
    }
    while (this.size > 0 && this.compare(this.head, min!.seq, min!.index, min!.offset) <= 0) {
      this.head = (this.head + 1) % this.capacity;
      this.size--;
    }
  }

  /**
   * When the oldest change past `pos` was copied (monotonic ms), or undefined when there is none; an
   * undefined `pos` (nothing known of the replica) is before every mark.
   */
  firstAfter(pos: Pos | undefined): number | undefined {
    if (this.size === 0) return undefined;
    const seq = pos === undefined ? undefined : this.generations.get(pos.generation);
    if (seq === undefined) return this.at[this.head];
    // Marks are in position order: binary search for the first one past `pos`.
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.compare(this.slot(mid), seq, pos!.index, pos!.offset) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.size ? this.at[this.slot(lo)] : undefined;
  }

  private slot(n: number): number {
    return (this.head + n) % this.capacity;
  }

  private compare(slot: number, seq: number, index: number, offset: number): number {
    return this.seq[slot]! - seq || this.index[slot]! - index || this.offset[slot]! - offset;
  }

  /** Merges neighbours two by two: each pair keeps the later position and the earlier time. */
  private halve(): void {
    const n = this.size >>> 1;
    for (let k = 0; k < n; k++) {
      const a = this.slot(2 * k);
      const b = this.slot(2 * k + 1);
      const to = this.slot(k);
      this.seq[to] = this.seq[b]!;
      this.index[to] = this.index[b]!;
      this.offset[to] = this.offset[b]!;
      this.at[to] = this.at[a]!;
    }
    this.size = n;
  }

  /** Generations no mark refers to any more, except the newest few, are forgotten. */
  private forgetOldGenerations(): void {
    if (this.generations.size <= 8) return;
    const oldest = this.size > 0 ? this.seq[this.head]! : this.nextSeq - 1;
    for (const [name, seq] of this.generations) if (seq < oldest && this.generations.size > 8) this.generations.delete(name);
  }
}
