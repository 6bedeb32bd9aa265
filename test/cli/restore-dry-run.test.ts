/**
 * `restore -dry-run` on replicas written by the real Litestream: it prints the replica, generation,
 * snapshot, WAL segments and bytes a restore would use (checked against the replica's files on disk and
 * against what a real restore then does) and writes nothing. A `-timestamp` before every generation's
 * first snapshot fails with the restorable ranges; one after the last upload restores the latest state.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { isReplicateError } from '../../src/errors.js';
import { previewRestore } from '../../src/replica/restore.js';
import { runCli } from '../helpers/cli.js';
import { makeMultiGenerationReplica, type ReplicaFixture } from '../helpers/fixtures.js';
import { contentDigest } from '../helpers/source-db.js';

interface DiskObject {
  index: number;
  offset: number;
  size: number;
  createdAt: Date;
}
interface DiskGeneration {
  generation: string;
  snapshots: DiskObject[];
  segments: DiskObject[];
}

/** What the replica directory holds, read with plain fs (createdAt = mtime truncated to milliseconds). */
function readReplicaDir(root: string): DiskGeneration[] {
  const stat = (p: string) => {
    const st = statSync(p, { bigint: true });
    return { size: Number(st.size), createdAt: new Date(Number(st.mtimeNs / 1_000_000n)) };
  };
  return readdirSync(join(root, 'generations'))
    .sort()
    .map((generation) => {
      const dir = join(root, 'generations', generation);
      const snapshots = readdirSync(join(dir, 'snapshots'))
        .filter((f) => /^[0-9a-f]{8}\.snapshot\.lz4$/.test(f))
        .map((f) => ({ index: parseInt(f.slice(0, 8), 16), offset: 0, ...stat(join(dir, 'snapshots', f)) }));
      const segments = readdirSync(join(dir, 'wal'))
        .filter((f) => /^[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/.test(f))
        .map((f) => ({ index: parseInt(f.slice(0, 8), 16), offset: parseInt(f.slice(9, 17), 16), ...stat(join(dir, 'wal', f)) }))
        .sort((a, b) => a.index - b.index || a.offset - b.offset);
      return { generation, snapshots, segments };
    });
}

const ms = (d: Date) => d.getTime();
const time = (o: DiskObject) => o.createdAt.getTime();
const newest = (objs: DiskObject[]) => Math.max(...objs.map(time));
const firstSnapshot = (g: DiskGeneration) => Math.min(...g.snapshots.map(time));
const lastObject = (g: DiskGeneration) => newest([...g.snapshots, ...g.segments]);

/** The expected plan, by the documented rules, straight from the files (T = undefined: latest). */
function expectedPlan(gens: DiskGeneration[], t?: number) {
  const candidates = gens.filter((g) => g.snapshots.some((s) => t === undefined || ms(s.createdAt) <= t));
  const state = (g: DiskGeneration) => (t === undefined ? lastObject(g) : Math.min(lastObject(g), t));
  const g = candidates.reduce((best, c) => (state(c) > state(best) ? c : best));
  const snapshot = g.snapshots
    .filter((s) => t === undefined || ms(s.createdAt) <= t)
    .reduce((a, b) => (ms(b.createdAt) > ms(a.createdAt) ? b : a));
  const cut = g.segments.findIndex((s) => t !== undefined && ms(s.createdAt) > t);
  const segments = (cut === -1 ? g.segments : g.segments.slice(0, cut)).filter((s) => s.index >= snapshot.index);
  return { g, snapshot, segments, bytes: snapshot.size + segments.reduce((n, s) => n + s.size, 0) };
}

/** `key  value` lines of the dry-run report. */
function field(stdout: string, key: string): string {
  const m = new RegExp(`^${key} +(.*)$`, 'm').exec(stdout);
  expect(m, `no "${key}" line in:\n${stdout}`).not.toBeNull();
  return m![1]!;
}

const hex8 = (n: number) => n.toString(16).padStart(8, '0');

let fx: ReplicaFixture;
let gens: DiskGeneration[];
let work: string;
let url: string;

beforeAll(async () => {
  fx = await makeMultiGenerationReplica({ generations: 3, writesPerGeneration: 3 });
  gens = readReplicaDir(fx.replicaDir);
  work = mkdtempSync(join(tmpdir(), 'stn-dry-run-'));
  url = `file://${fx.replicaDir}`;
}, 120_000);

afterAll(() => {
  rmSync(fx.dir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

let caseN = 0;
function outDir(): { dir: string; out: string } {
  const dir = join(work, `case-${caseN++}`);
  mkdirSync(dir);
  return { dir, out: join(dir, 'restored.db') };
}

/** Checks the report's plan lines against the expected plan. */
function expectReport(stdout: string, e: ReturnType<typeof expectedPlan>): void {
  expect(field(stdout, 'generation')).toBe(e.g.generation);
  expect(field(stdout, 'snapshot')).toBe(
    `index ${e.snapshot.index} (hex ${hex8(e.snapshot.index)}), ${e.snapshot.size} bytes, created ${e.snapshot.createdAt.toISOString()}`,
  );
  const walBytes = e.segments.reduce((n, s) => n + s.size, 0);
  if (e.segments.length === 0) {
    expect(field(stdout, 'wal')).toBe('none (the snapshot alone)');
  } else {
    const first = e.segments[0]!.index;
    const last = e.segments.at(-1)!.index;
    const indexes = last - first + 1;
    expect(field(stdout, 'wal')).toBe(
      `${e.segments.length} segment${e.segments.length === 1 ? '' : 's'} in ${indexes} ${indexes === 1 ? 'index' : 'indexes'}, ` +
        `${first} (hex ${hex8(first)}) .. ${last} (hex ${hex8(last)}), ${walBytes} bytes`,
    );
  }
  expect(field(stdout, 'download')).toBe(`${e.bytes} bytes (stored size of the snapshot and WAL segments)`);
  expect(field(stdout, 'state at')).toBe(new Date(Math.max(ms(e.snapshot.createdAt), ...e.segments.map(time))).toISOString());
}

describe('restore -dry-run', () => {
  it('fixture: several generations, several WAL segments', () => {
    expect(gens.length).toBe(3);
    expect(gens.every((g) => g.snapshots.length > 0 && g.segments.length > 1)).toBe(true);
  });

  it('prints the latest plan and the restorable range of every generation, and writes nothing', async () => {
    const { dir, out } = outDir();
    const r = await runCli(['restore', '-dry-run', '-o', out, url]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('dry run: nothing was downloaded or written\n');
    expect(readdirSync(dir)).toEqual([]);

    const e = expectedPlan(gens);
    expect(e.g.generation).toBe(fx.generations.at(-1));
    expect(field(r.stdout, 'replica')).toBe(`file (file, ${fx.replicaDir})`);
    expect(field(r.stdout, 'target')).toBe('latest');
    expect(field(r.stdout, 'output')).toBe(out);
    expectReport(r.stdout, e);

    // The table: one aligned row per generation, in name order.
    const table = r.stdout.split('\n\n')[1]!.trimEnd().split('\n');
    expect(table[0]).toMatch(/^generation {8}first restorable {10}last restorable {11}snapshots {2}segments$/);
    expect(table.slice(1).map((l) => l.split(/ +/))).toEqual(
      gens.map((g) => [
        g.generation,
        new Date(firstSnapshot(g)).toISOString(),
        new Date(lastObject(g)).toISOString(),
        String(g.snapshots.length),
        String(g.segments.length),
      ]),
    );
    // Aligned: every cell starts where its header does.
    const starts = ['first restorable', 'last restorable', 'snapshots', 'segments'].map((h) => table[0]!.indexOf(h));
    for (const row of table.slice(1)) for (const s of starts) expect(row.slice(s - 2, s + 1), row).toMatch(/^ {2}\S$/);

    // What a real restore then does is what the dry run said.
    const real = await runCli(['restore', '-o', out, url]);
    expect(real.code, real.stderr).toBe(0);
    const indexes = e.segments.length === 0 ? 0 : e.segments.at(-1)!.index - e.snapshot.index + 1;
    // It says the point in time it restored: the dry run's `state at`.
    expect(real.stderr).toMatch(
      new RegExp(
        `^restored ${out} to ${field(r.stdout, 'state at')} \\(replica file, generation ${e.g.generation}, index \\d+, offset \\d+; ` +
          `from snapshot index ${e.snapshot.index}, ${indexes} WAL ${indexes === 1 ? 'index' : 'indexes'}\\)\n$`,
      ),
    );
    expect(contentDigest(out)).toBe(fx.truth.at(-1)!.digest);
  });

  it('works with two dashes and without -o (URL mode), and says when the output exists', async () => {
    const r = await runCli(['restore', url, '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/^output/m);
    expectReport(r.stdout, expectedPlan(gens));

    const { dir, out } = outDir();
    writeFileSync(out, 'precious');
    const exists = await runCli(['restore', '-dry-run', '-o', out, url]);
    expect(exists.code, exists.stderr).toBe(0);
    expect(field(exists.stdout, 'output')).toBe(`${out} (a restore would fail: cannot restore, output path already exists: ${out})`);
    const skip = await runCli(['restore', '-dry-run', '-if-db-not-exists', '-o', out, url]);
    expect(field(skip.stdout, 'output')).toBe(`${out} (exists: -if-db-not-exists would skip the restore)`);
    expect(readdirSync(dir)).toEqual(['restored.db']);
  });

  it('fails like a restore on an empty replica, and -if-replica-exists exits 0', async () => {
    const { dir } = outDir();
    const empty = `file://${join(dir, 'no-replica')}`;
    const r = await runCli(['restore', '-dry-run', empty]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no matching backups found: replica is empty/);
    const skip = await runCli(['restore', '-dry-run', '-if-replica-exists', empty]);
    expect(skip.code, skip.stderr).toBe(0);
    expect(skip.stdout).toBe('');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('plans a point in time inside an older generation, as the restore then does', async () => {
    // The last recorded state of the first generation: later generations began after it.
    const truth = fx.truth.filter((t) => t.pos.generation === fx.generations[0]).at(-1)!;
    const e = expectedPlan(gens, ms(truth.at));
    expect(e.g.generation).toBe(fx.generations[0]);
    const { dir, out } = outDir();
    const r = await runCli(['restore', '-dry-run', '-timestamp', truth.at.toISOString(), '-o', out, url]);
    expect(r.code, r.stderr).toBe(0);
    expect(field(r.stdout, 'target')).toBe(`-timestamp ${truth.at.toISOString()}`);
    expectReport(r.stdout, e);
    expect(readdirSync(dir)).toEqual([]);

    const real = await runCli(['restore', '-timestamp', truth.at.toISOString(), '-o', out, url]);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stderr).toContain(`generation ${e.g.generation}, index `);
    expect(real.stderr).toContain(`from snapshot index ${e.snapshot.index},`);
    // The point in time restored: at or before the one asked for, and the one the dry run planned.
    expect(real.stderr).toContain(`restored ${out} to ${field(r.stdout, 'state at')} (`);
    expect(Date.parse(field(r.stdout, 'state at'))).toBeLessThanOrEqual(truth.at.getTime());
    expect(contentDigest(out)).toBe(truth.digest);
  });

  it('plans -index (hexadecimal) in the chosen generation', async () => {
    const e = expectedPlan(gens);
    const index = e.segments[0]!.index;
    const r = await runCli(['restore', '-dry-run', '-index', hex8(index), url]);
    expect(r.code, r.stderr).toBe(0);
    expect(field(r.stdout, 'target')).toBe(`-index ${hex8(index)} (index ${index})`);
    expect(field(r.stdout, 'wal')).toMatch(new RegExp(` in 1 index, ${index} \\(hex ${hex8(index)}\\) \\.\\. ${index} \\(hex`));
  });

  it('in config mode, names the replica it chose and lists only that replica’s generations', async () => {
    // "old" holds only the first generation; "current" everything.
    const old = join(work, 'old-replica');
    cpSync(fx.replicaDir, old, { recursive: true, preserveTimestamps: true });
    for (const g of fx.generations.slice(1)) rmSync(join(old, 'generations', g), { recursive: true });
    const cfg = join(work, 'litestream.yml');
    writeFileSync(
      cfg,
      `dbs:\n  - path: ${fx.dbPath}\n    replicas:\n      - name: old\n        path: ${old}\n      - name: current\n        url: ${url}\n`,
    );
    const r = await runCli(['restore', '-config', cfg, '-dry-run', fx.dbPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(field(r.stdout, 'replica')).toBe(`current (file, ${fx.replicaDir})`);
    expect(field(r.stdout, 'output')).toMatch(/\(a restore would fail: cannot restore, output path already exists/);
    expect(r.stdout.split('\n\n')[1]!.trimEnd().split('\n').length).toBe(1 + gens.length);

    const fromOld = await runCli(['restore', '-config', cfg, '-replica', 'old', '-dry-run', fx.dbPath]);
    expect(fromOld.code, fromOld.stderr).toBe(0);
    expect(field(fromOld.stdout, 'replica')).toBe(`old (file, ${old})`);
    expect(field(fromOld.stdout, 'generation')).toBe(fx.generations[0]);
    expect(fromOld.stdout.split('\n\n')[1]!.trimEnd().split('\n').length).toBe(2);
  });
});

describe('restore -timestamp out of the restorable window', () => {
  const earliest = () => Math.min(...gens.map(firstSnapshot));
  const rangeText = () =>
    gens.map((g) => `${g.generation} ${new Date(firstSnapshot(g)).toISOString()} .. ${new Date(lastObject(g)).toISOString()}`).join('; ');

  it('before every generation: exit 1, the restorable ranges, nothing on disk (restore and dry run alike)', async () => {
    const before = new Date(earliest() - 1000).toISOString();
    for (const extra of [[], ['-dry-run'], ['-if-replica-exists']]) {
      const { dir } = outDir();
      const r = await runCli(['restore', ...extra, '-timestamp', before, '-o', join(dir, 'sub', 'restored.db'), url]);
      expect(r.code, `${extra.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(`error: no matching backups found at or before ${before} in file (${fx.replicaDir}): `);
      expect(r.stderr).toContain(
        `the timestamp is before the earliest restorable point ${new Date(earliest()).toISOString()}; restorable: ${rangeText()}\n`,
      );
      expect(readdirSync(dir)).toEqual([]);
    }
  });

  it('has a stable code in the library', async () => {
    const replicas = [{ name: 'file', client: new FileReplicaClient({ path: fx.replicaDir }) }];
    const err = await previewRestore(replicas, { timestamp: new Date(earliest() - 1) }).catch((e: unknown) => e);
    expect(isReplicateError(err, 'TIMESTAMP_OUT_OF_RANGE'), String(err)).toBe(true);
    expect((err as { details: { earliest: Date } }).details.earliest).toEqual(new Date(earliest()));
  });

  it('at exactly the earliest point restores it; after the last upload restores the latest state', async () => {
    const first = new Date(earliest()).toISOString();
    const r = await runCli(['restore', '-dry-run', '-timestamp', first, url]);
    expect(r.code, r.stderr).toBe(0);
    expectReport(r.stdout, expectedPlan(gens, earliest()));

    const { out } = outDir();
    const later = await runCli(['restore', '-timestamp', '2100-01-01T00:00:00Z', '-o', out, url]);
    expect(later.code, later.stderr).toBe(0);
    expect(contentDigest(out)).toBe(fx.truth.at(-1)!.digest);
    const dry = await runCli(['restore', '-dry-run', '-timestamp', '2100-01-01T00:00:00Z', url]);
    expectReport(dry.stdout, expectedPlan(gens));
  });
});
