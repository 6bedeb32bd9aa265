/**
 * Replicas written by the real Litestream v0.3.13, restored by stn-replicate: the result must equal the
 * source at that point (ground truth recorded while writing) and Litestream's own restore.
 */
import { cpSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import {
  makeLargeHistoryReplica,
  makeMixedSegmentReplica,
  makeMultiGenerationReplica,
  makeMultiIndexReplica,
  makeShrinkingReplica,
  type ReplicaFixture,
} from '../helpers/fixtures.js';
import { expectSameListings } from '../helpers/both-tools.js';
import { runLitestream } from '../helpers/oracle.js';
import { contentDigest } from '../helpers/source-db.js';

/** Stored sizes of every WAL segment in a file replica. */
function walSegmentSizes(replicaDir: string): number[] {
  return (readdirSync(replicaDir, { recursive: true }) as string[])
    .filter((rel) => rel.includes('/wal/') && rel.endsWith('.wal.lz4'))
    .map((rel) => statSync(join(replicaDir, rel)).size);
}

let outN = 0;
function out(fx: ReplicaFixture): string {
  return join(fx.dir, `out-${outN++}.db`);
}

async function ours(fx: ReplicaFixture, ...args: string[]): Promise<string> {
  const o = out(fx);
  const r = await runCli(['restore', '-o', o, ...args, `file://${fx.replicaDir}`]);
  expect(r.code, r.stderr).toBe(0);
  return contentDigest(o);
}

async function theirs(fx: ReplicaFixture, ...args: string[]): Promise<string> {
  const o = out(fx);
  const r = await runLitestream(['restore', '-o', o, ...args, `file://${fx.replicaDir}`]);
  expect(r.code, r.stderr).toBe(0);
  return contentDigest(o);
}

/** A spread of entries: first, last and evenly in between. */
function spread<T>(items: readonly T[], n: number): T[] {
  if (items.length <= n) return [...items];
  return Array.from({ length: n }, (_, i) => items[Math.round((i * (items.length - 1)) / (n - 1))]!);
}

const fixtures: Record<string, ReplicaFixture> = {};

beforeAll(async () => {
  const [multiIndex, multiGen, large, shrinking, mixedSegments] = await Promise.all([
    makeMultiIndexReplica({ transactions: 24 }),
    makeMultiGenerationReplica({ generations: 3, writesPerGeneration: 4 }),
    makeLargeHistoryReplica({ batches: 10, rowsPerBatch: 400 }),
    makeShrinkingReplica(),
    makeMixedSegmentReplica([300, 5_000, 40_000, 150_000, 2_600_000, 800, 1_300_000, 90_000, 20_000]),
  ]);
  Object.assign(fixtures, { multiIndex, multiGen, large, shrinking, mixedSegments });
}, 120_000);

afterAll(() => {
  for (const fx of Object.values(fixtures)) rmSync(fx.dir, { recursive: true, force: true });
});

describe.each(['multiIndex', 'multiGen', 'large', 'shrinking', 'mixedSegments'])('Litestream replica: %s', (name) => {
  const fx = () => fixtures[name]!;

  it('the latest restore equals the source and Litestream’s restore, page for page', async () => {
    const final = fx().truth.at(-1)!;
    const a = join(fx().dir, 'latest-ours.db');
    const b = join(fx().dir, 'latest-theirs.db');
    expect((await runCli(['restore', '-o', a, `file://${fx().replicaDir}`])).code).toBe(0);
    expect((await runLitestream(['restore', '-o', b, `file://${fx().replicaDir}`])).code).toBe(0);
    // Same file, byte for byte (both are the snapshot with the same committed pages applied).
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    expect(contentDigest(a)).toBe(final.digest);
    expect(contentDigest(fx().dbPath)).toBe(final.digest);
  });

  it('restores every recorded point in time to the recorded content', async () => {
    const points = spread(fx().truth, 8);
    for (const t of points) expect(await ours(fx(), '-timestamp', t.at.toISOString()), t.at.toISOString()).toBe(t.digest);
  });

  it('agrees with Litestream’s own -timestamp restores', async () => {
    // Litestream rejects a timestamp after the generation's last object (its bug B8): skip the last point.
    const points = spread(fx().truth.slice(0, -1), 3);
    for (const t of points) {
      const ts = t.at.toISOString();
      expect(await ours(fx(), '-timestamp', ts)).toBe(await theirs(fx(), '-timestamp', ts));
    }
  });

  it('agrees with Litestream’s own -index restores (hex), in every index of the newest generation', async () => {
    const gen = fx().truth.at(-1)!.pos.generation;
    const indexes = [
      ...new Set(
        fx()
          .truth.filter((t) => t.pos.generation === gen)
          .map((t) => t.pos.index),
      ),
    ];
    for (const i of spread(indexes, 4)) {
      const hex = i.toString(16);
      expect(await ours(fx(), '-generation', gen, '-index', hex), `index ${hex}`).toBe(
        await theirs(fx(), '-generation', gen, '-index', hex),
      );
    }
  });

  it('lists the same generations, snapshots and WAL segments as Litestream', async () => {
    await expectSameListings([`file://${fx().replicaDir}`]);
  });
});

describe('fixture shape (the tests above must cover what they claim)', () => {
  it('spans several WAL indexes and generations', () => {
    const indexes = new Set(fixtures.multiIndex!.truth.map((t) => t.pos.index));
    expect(indexes.size).toBeGreaterThanOrEqual(3);
    expect(fixtures.multiGen!.generations.length).toBe(3);
    expect(fixtures.large!.truth.at(-1)!.rows).toBeGreaterThan(2000);
  });

  it('has WAL segments read into one own buffer, into several pooled pieces, and in more than one read call', () => {
    const sizes = walSegmentSizes(fixtures.mixedSegments!.replicaDir);
    expect(sizes.some((s) => s < 16 * 1024)).toBe(true); // below the pool's smallest request
    expect(sizes.filter((s) => s > 64 * 1024 && s <= 1024 * 1024).length).toBeGreaterThanOrEqual(2); // several pieces, one read
    expect(sizes.some((s) => s > 1024 * 1024)).toBe(true); // more than one read call
  });
});

describe('snapshot-only replica', () => {
  it('restores the snapshot alone, to the same bytes as Litestream', async () => {
    const fx = fixtures.multiIndex!;
    const copy = join(fx.dir, 'snapshot-only');
    cpSync(fx.replicaDir, copy, { recursive: true, preserveTimestamps: true });
    for (const gen of readdirSync(join(copy, 'generations')))
      rmSync(join(copy, 'generations', gen, 'wal'), { recursive: true, force: true });
    const a = join(fx.dir, 'snap-ours.db');
    const b = join(fx.dir, 'snap-theirs.db');
    const r = await runCli(['restore', '-o', a, `file://${copy}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/0 WAL indexes/);
    expect((await runLitestream(['restore', '-o', b, `file://${copy}`])).code).toBe(0);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
  });
});
