/**
 * Shared steps of the cloud-backend oracle tests: replicate a database with either tool through a
 * config file (the same file works for both), and compare both tools' listings of the result.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';
import { runCli } from './cli.js';
import { mixedWrite, waitForUpload } from './fixtures.js';
import { LoggedProcess, litestreamBin, oracleEnv, parseTable, runLitestream } from './oracle.js';
import { contentDigest, openSourceDb } from './source-db.js';

const bin = join(import.meta.dirname, '..', '..', 'bin', 'stn-replicate.js');

export type Tool = 'ours' | 'litestream';

export function startReplicator(tool: Tool, config: string): LoggedProcess {
  const [cmd, args] = tool === 'ours' ? [process.execPath, [bin, 'replicate', '-config', config]] : [litestreamBin(), ['replicate', '-config', config]];
  return new LoggedProcess(config, spawn(cmd, args as string[], { env: oracleEnv(), stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** Replicates `writes` varied transactions with `tool`, waiting for each upload; returns the source digest. */
export async function replicateSome(tool: Tool, dbPath: string, config: string, writes: number): Promise<string> {
  const db = openSourceDb(dbPath);
  const p = startReplicator(tool, config);
  try {
    await p.waitForLog(/snapshot written/);
    for (let step = 0; step < writes; step++) {
      const after = p.lines.length;
      db.transaction(mixedWrite(db, step))();
      await waitForUpload(p, dbPath, after);
    }
  } finally {
    await p.stop(tool === 'ours' ? 'SIGTERM' : 'SIGINT');
  }
  const digest = contentDigest(db);
  db.close();
  return digest;
}

/** Our `generations`, `snapshots` and `wal` rows equal Litestream's (lag aside) and are not empty. */
export async function expectSameListings(config: string, dbPath: string): Promise<void> {
  for (const cmd of ['generations', 'snapshots', 'wal']) {
    const ours = parseTable((await runCli([cmd, '-config', config, dbPath])).stdout).map(({ lag: _l, ...rest }) => rest);
    const theirs = parseTable((await runLitestream([cmd, '-config', config, dbPath])).stdout).map(({ lag: _l, ...rest }) => rest);
    expect(ours).toEqual(theirs);
    expect(ours.length).toBeGreaterThan(0);
  }
}

/** Restores `dbPath` through `config` with `tool` into `out`; the result must have `digest`. */
export async function expectRestoresTo(tool: Tool, config: string, dbPath: string, out: string, digest: string): Promise<void> {
  const args = ['restore', '-config', config, '-o', out, dbPath];
  const r = tool === 'ours' ? await runCli(args) : await runLitestream(args);
  expect(r.code, r.stderr).toBe(0);
  expect(contentDigest(out)).toBe(digest);
}

/** Calls sync() until it succeeds (the store answers again) or `attempts` run out, 250 ms apart. */
export async function syncUntilCaughtUp(r: { sync(): Promise<void> }, attempts: number): Promise<boolean> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const ok = await r.sync().then(
      () => true,
      () => new Promise<boolean>((res) => setTimeout(() => res(false), 250)),
    );
    if (ok) return true;
  }
  return false;
}
