/**
 * A bound on the local shadow WAL. A replica that stays down keeps every shadow index since its last
 * upload (Litestream's too), which would fill the disk without a word. At half the limit this warns; at
 * the limit it asks for a new generation: the old generation's shadow files can then go, and a replica
 * that comes back starts the new generation with a snapshot. Its point-in-time history has a break
 * there; nothing committed is lost (the new generation's snapshot holds it).
 */
import type { Logger } from '../logger.js';

/** The local shadow WAL's footprint, for monitoring (a gauge and a counter). */
export interface ShadowWalUsage {
  /** Bytes of shadow WAL of the current generation, as of the last sync that measured them. */
  bytes: number;
  /** `maxShadowWalBytes` (0: no limit). */
  limit: number;
  /** How many times the limit was reached (each started a new generation). */
  limitReached: number;
}

export class ShadowLimit {
  private readonly usage: ShadowWalUsage;
  private halfWarned = false;

  constructor(
    limit: number,
    private readonly log: Logger,
    private readonly dbPath: string,
  ) {
    this.usage = { bytes: 0, limit, limitReached: 0 };
  }

  snapshot(): ShadowWalUsage {
    return { ...this.usage };
  }

  /** After a new generation: only its first shadow file is left. */
  reset(bytes: number): void {
    this.usage.bytes = bytes;
    this.halfWarned = false;
  }

  /**
   * Measures the shadow files left (`sizes`, one per index) and returns the reason for a new generation
   * when the limit is reached; `behind` names the replicas that are behind (for the error).
   */
  check(generation: string, sizes: readonly number[], behind: () => string[]): string | undefined {
    const bytes = sizes.reduce((a, b) => a + b, 0);
    this.usage.bytes = bytes;
    // While every replica keeps up there are at most three files (one older index is kept): nothing to bound.
    if (sizes.length <= 3) {
      this.halfWarned = false;
      return undefined;
    }
    const limit = this.usage.limit;
    if (limit <= 0) return undefined;
    const who = () => behind().join(', ') || 'unknown';
    if (bytes >= limit) {
      this.usage.limitReached++;
      const names = who();
      this.log.error('shadow wal limit reached: replicas are too far behind; starting a new generation so the disk does not fill', {
        db: this.dbPath,
        generation,
        bytes,
        limit,
        indexes: sizes.length,
        behind: names,
      });
      this.halfWarned = false;
      return `shadow wal limit reached (${bytes} bytes >= ${limit}) while replicas were behind: ${names}`;
    }
    if (bytes >= limit / 2 && !this.halfWarned) {
      this.halfWarned = true;
      this.log.warn('shadow wal is growing: replicas are behind', { db: this.dbPath, generation, bytes, limit, behind: who() });
    }
    return undefined;
  }
}
