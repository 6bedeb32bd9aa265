/**
 * Both tools on one replica, whoever wrote it: our restore and Litestream's give the same content, and
 * our `generations`, `snapshots` and `wal` rows equal Litestream's (lag aside: each run measures it
 * against its own "now"; and as Litestream prints them: see asLitestreamPrints).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'vitest';
import { runCli } from './cli.js';
import { asLitestreamPrints, parseTable, runLitestream } from './oracle.js';
import { contentDigest } from './source-db.js';

/**
 * Restores the file replica at `replicaDir` (its latest state) with ours and with Litestream into new
 * files in `dir`; both must succeed and have the content digest `expected`. Returns the two files.
 */
export async function expectBothRestore(replicaDir: string, dir: string, expected: string): Promise<{ ours: string; theirs: string }> {
  const tag = randomBytes(4).toString('hex');
  const ours = join(dir, `ours-${tag}.db`);
  const theirs = join(dir, `theirs-${tag}.db`);
  const a = await runCli(['restore', '-o', ours, `file://${replicaDir}`]);
  expect(a.code, a.stderr).toBe(0);
  const b = await runLitestream(['restore', '-o', theirs, `file://${replicaDir}`]);
  expect(b.code, b.stderr).toBe(0);
  expect(contentDigest(ours), 'our restore').toBe(expected);
  expect(contentDigest(theirs), "Litestream's restore").toBe(expected);
  return { ours, theirs };
}

/**
 * `target`: a replica URL, or `-config PATH DB_PATH`; `env` for both tools (never the host's own);
 * `homeDir` for ours (see runCli).
 */
export async function expectSameListings(target: string[], env: Record<string, string> = {}, homeDir?: string): Promise<void> {
  for (const cmd of ['generations', 'snapshots', 'wal']) {
    const ours = await runCli([cmd, ...target], { env, ...(homeDir !== undefined ? { homeDir } : {}) });
    const theirs = await runLitestream([cmd, ...target], env);
    expect(ours.code, `${cmd}: ${ours.stderr}`).toBe(0);
    expect(theirs.code, `litestream ${cmd}: ${theirs.stderr}`).toBe(0);
    const strip = (rows: Record<string, string>[]) => rows.map(({ lag: _lag, ...rest }) => rest);
    expect(strip(asLitestreamPrints(parseTable(ours.stdout))), cmd).toEqual(strip(parseTable(theirs.stdout)));
    expect(strip(parseTable(ours.stdout)).length, `${cmd} lists nothing`).toBeGreaterThan(0);
  }
}
