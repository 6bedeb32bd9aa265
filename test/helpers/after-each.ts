/**
 * What a test leaves behind, undone after each test: temporary directories, and anything that must be
 * closed or stopped (replications, processes, leases, patched functions).
 *
 * Call these at a test file's top level. vitest runs `afterEach` hooks in the reverse order of their
 * registration (its default `sequence.hooks: 'stack'`), so declare the directories first and what runs
 * inside them after: the processes and replications are then stopped before their directories go.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

/**
 * Returns `tmp()`, which makes a fresh directory under the system's temporary directory, named
 * `<prefix>XXXXXX` (or with the prefix given to that call); every one is removed after the test.
 */
export function tempDirs(prefix: string): (prefixForThisOne?: string) => string {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return (p = prefix) => {
    const d = mkdtempSync(join(tmpdir(), p));
    dirs.push(d);
    return d;
  };
}

/**
 * A list whose items are closed with `close` after each test, one after the other, in the order they
 * were pushed. A test that closes an item itself can take it off with `splice`.
 */
export function closeAfterEach<T>(close: (item: T) => unknown): T[] {
  const items: T[] = [];
  afterEach(async () => {
    for (const item of items.splice(0)) await close(item);
  });
  return items;
}
