/**
 * Replaying a long replication history on a file replica in seconds: the replication's clock is
 * injected (`now: () => sim`) and every object the replica writes is stamped with the simulated time of
 * the step that wrote it (a file replica's CreatedAt is the file's mtime, for Litestream as for us).
 * Ground truth is recorded as `RecordedState`s; `verifyRetainedStates` checks a replica after a
 * retention run against them.
 */
import { existsSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { collect } from '../../src/client/replica-client.js';
import type { FileReplicaClient } from '../../src/client/file-client.js';
import type { RetentionResult } from '../../src/replica/replica.js';
import { restore } from '../../src/replica/restore.js';
import { contentDigest } from './source-db.js';

export const MIN = 60_000;
export const HOUR = 60 * MIN;
/** Simulated histories start here (whole seconds, so mtimes and RFC 3339 timestamps compare exactly). */
export const SIM_START = Date.parse('2020-03-01T00:00:00Z');

/** Gives every replica object written since the last call the simulated time `t` as its mtime. */
export class Stamper {
  private readonly stamped = new Map<string, number>();
  constructor(private readonly root: string) {}
  stamp(t: number): void {
    if (!existsSync(this.root)) return;
    for (const rel of readdirSync(this.root, { recursive: true }) as string[]) {
      if (!rel.endsWith('.lz4')) continue;
      const path = join(this.root, rel);
      const m = statSync(path).mtimeMs;
      if (this.stamped.get(path) === m) continue; // already stamped, not rewritten since
      utimesSync(path, t / 1000, t / 1000);
      this.stamped.set(path, statSync(path).mtimeMs);
    }
  }
}

/** The source's content right after a sync at simulated time `t`. */
export interface RecordedState {
  t: number;
  generation: string;
  digest: string;
}

/**
 * Checks the replica after a retention run at simulated time `now` and restores every recorded state
 * that the retained objects cover; returns those states.
 *
 * Which states are covered, under Litestream's rule: those of a surviving generation at or after the
 * oldest snapshot kept in it. (States in the window but before that snapshot needed an older snapshot,
 * which the rule deletes — also when retention had to take a snapshot because none was in the window.)
 * The latest state restores without a timestamp whatever its age.
 */
export async function verifyRetainedStates(
  client: FileReplicaClient,
  dir: string,
  now: number,
  retentionMs: number,
  current: string,
  states: readonly RecordedState[],
  result: RetentionResult,
  label: string,
): Promise<RecordedState[]> {
  const generations = await client.generations();
  expect(generations, label).toContain(current);
  const oldestSnapshot = new Map<string, number>();
  for (const g of generations) {
    const snaps = await collect(client.snapshots(g));
    expect(snaps.length, `${label}: ${g} has a snapshot`).toBeGreaterThan(0);
    const inWindow = snaps.filter(
      (s) =>
        s.createdAt.getTime() >= now - retentionMs || (result.snapshotTaken?.generation === g && result.snapshotTaken.index === s.index),
    );
    if (g !== current)
      expect(inWindow.length, `${label}: old generation ${g} survives only with a snapshot in the window`).toBeGreaterThan(0);
    const minIndex = Math.min(...snaps.map((s) => s.index));
    // Nothing below the oldest kept snapshot survives.
    for (const s of await collect(client.walSegments(g)))
      expect(s.index, `${label}: segment ${g}/${s.index}/${s.offset}`).toBeGreaterThanOrEqual(minIndex);
    if (inWindow.length > 0) expect(minIndex, label).toBe(Math.min(...inWindow.map((s) => s.index)));
    oldestSnapshot.set(g, Math.min(...snaps.map((s) => s.createdAt.getTime())));
  }
  const latest = states[states.length - 1]!;
  const covered: RecordedState[] = [];
  // Every in-window state from the oldest kept snapshot of its generation on; the snapshots themselves
  // are the checked structure above.
  for (const s of states) {
    const from = oldestSnapshot.get(s.generation);
    if (from === undefined || s.t < from || s.t < now - retentionMs) continue;
    const out = join(dir, `restore-${now}-${covered.length}.db`);
    await restore([{ name: 'file', client }], { outputPath: out, timestamp: new Date(s.t) });
    expect(contentDigest(out), `${label}: state at ${new Date(s.t).toISOString()}`).toBe(s.digest);
    rmSync(out);
    covered.push(s);
  }
  // Whatever the window, the current content restores (from the snapshot retention took if it had to).
  const out = join(dir, `restore-${now}-latest.db`);
  await restore([{ name: 'file', client }], { outputPath: out });
  expect(contentDigest(out), `${label}: latest`).toBe(latest.digest);
  rmSync(out);
  return covered;
}
