/**
 * Both tools list the same replica: our `generations`, `snapshots` and `wal` rows must equal the real
 * Litestream's (lag aside: it is measured against "now" by each run), whoever wrote the replica.
 */
import { expect } from 'vitest';
import { runCli } from './cli.js';
import { parseTable, runLitestream } from './oracle.js';

/** `target`: a replica URL, or `-config PATH DB_PATH`; `env` for both tools (never the host's own). */
export async function expectSameListings(target: string[], env: Record<string, string> = {}): Promise<void> {
  for (const cmd of ['generations', 'snapshots', 'wal']) {
    const ours = await runCli([cmd, ...target], { env });
    const theirs = await runLitestream([cmd, ...target], env);
    expect(ours.code, `${cmd}: ${ours.stderr}`).toBe(0);
    expect(theirs.code, `litestream ${cmd}: ${theirs.stderr}`).toBe(0);
    const strip = (text: string) => parseTable(text).map(({ lag: _lag, ...rest }) => rest);
    expect(strip(ours.stdout), cmd).toEqual(strip(theirs.stdout));
    expect(strip(ours.stdout).length, `${cmd} lists nothing`).toBeGreaterThan(0);
  }
}
