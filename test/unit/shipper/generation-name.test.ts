/**
 * New generation names sort *descending* in creation order, so that Litestream's restore tie rule
 * ("the first generation in ascending name order wins when the last object times are equal", which
 * happens on stores with 1-second timestamps) lands on the newest lineage, with both tools.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isGenerationName } from '../../../src/layout.js';
import { MetaDir, newGenerationName } from '../../../src/meta/meta-dir.js';
import { tempDirs } from '../../helpers/after-each.js';

const tmp = tempDirs('stn-genname-');

const T = Date.parse('2026-03-01T12:00:00.000Z');

describe('generation names', () => {
  it('are 16 lowercase hex digits', () => {
    for (let i = 0; i < 200; i++) expect(isGenerationName(newGenerationName(undefined, T + i * 7919))).toBe(true);
  });

  it('sort strictly descending in creation order, one millisecond apart', () => {
    const names: string[] = [];
    for (let i = 0; i < 500; i++) names.push(newGenerationName(undefined, T + i));
    const sorted = [...names].sort();
    expect(sorted).toEqual([...names].reverse());
    expect(new Set(names).size).toBe(names.length);
  });

  it('sort below the previous generation even when the clock stepped back or stood still', () => {
    let previous = newGenerationName(undefined, T);
    for (const now of [T, T - 3600_000, T - 1, T + 0, T - 86_400_000 * 365]) {
      const next = newGenerationName(previous, now);
      expect(isGenerationName(next)).toBe(true);
      expect(next < previous, `${next} < ${previous} at ${now - T} ms`).toBe(true);
      previous = next;
    }
  });

  it('sort below a previous name written by Litestream (random)', () => {
    for (const previous of ['0000000000000001', '0123456789abcdef', '8000000000000000', 'ffffffffffffffff', '00000000000fffff']) {
      const next = newGenerationName(previous, T);
      expect(isGenerationName(next)).toBe(true);
      expect(next < previous, `${next} < ${previous}`).toBe(true);
    }
  });

  it('follow the clock when the previous name is older (above)', () => {
    const previous = newGenerationName(undefined, T);
    const next = newGenerationName(previous, T + 60_000);
    expect(next).toMatch(new RegExp(`^${newGenerationName(undefined, T + 60_000).slice(0, 11)}`));
  });

  it('MetaDir names the next generation below every generation it knows (the generation file and leftover directories)', async () => {
    const d = tmp();
    const meta = new MetaDir(join(d, '.db-litestream'));
    // A fresh meta directory: a name from the clock.
    expect(isGenerationName(await meta.newGenerationName())).toBe(true);
    // The current generation (far in the "future" of a clock stepped back by a year).
    const current = newGenerationName(undefined, Date.now() + 365 * 86_400_000);
    await meta.writeGeneration(current);
    expect((await meta.newGenerationName()) < current).toBe(true);
    // The generation file cleared (continuity lost while stopped) but its directory still there.
    const older = '0000000000abcdef';
    mkdirSync(join(d, '.db-litestream', 'generations', older, 'wal'), { recursive: true });
    mkdirSync(join(d, '.db-litestream', 'generations', 'NOT-A-GENERATION'), { recursive: true });
    writeFileSync(join(d, '.db-litestream', 'generations', '0000000000000000.tmp'), '');
    await meta.clearGeneration();
    expect((await meta.newGenerationName()) < older).toBe(true);
  });
});
