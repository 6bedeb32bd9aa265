import { formatHex8 } from './layout.js';

/**
 * A position in a replicated WAL stream: generation, shadow WAL index, and byte offset inside that
 * index's WAL file (0 = start of the 32-byte WAL header).
 */
export interface Pos {
  readonly generation: string;
  readonly index: number;
  readonly offset: number;
}

/** Litestream's textual form: `<generation>/<index hex8>:<offset decimal>`; the zero position is "". */
export function formatPos(pos: Pos | undefined): string {
  if (pos === undefined || isZeroPos(pos)) return '';
  return `${pos.generation}/${formatHex8(pos.index)}:${pos.offset}`;
}

export function isZeroPos(pos: Pos): boolean {
  return pos.generation === '' && pos.index === 0 && pos.offset === 0;
}

/**
 * Order: generation (string compare), then index, then offset. Across generations this is an order for
 * sorting only: it does not say which lineage is newer (new generation names sort *below* older ones).
 */
export function comparePos(a: Pos, b: Pos): number {
  if (a.generation !== b.generation) return a.generation < b.generation ? -1 : 1;
  if (a.index !== b.index) return a.index - b.index;
  return a.offset - b.offset;
}
