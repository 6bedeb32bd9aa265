/**
 * Every bad input of a restore: the message names what failed and where, the exit code is 1 (or 0 where a
 * flag asks for it), and nothing is left behind in the output directory.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBin, runCli } from '../helpers/cli.js';
import { makeMultiIndexReplica, type ReplicaFixture } from '../helpers/fixtures.js';
import { contentDigest } from '../helpers/source-db.js';
import { readObject, rewriteObject } from '../helpers/replica-objects.js';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { isReplicateError } from '../../src/errors.js';
import { listGeneration } from '../../src/replica/listing.js';
import { executeRestore, restore } from '../../src/replica/restore.js';
import { planRestore } from '../../src/replica/restore-plan.js';

let fx: ReplicaFixture;
let work: string;
let gen: string;

beforeAll(async () => {
  // Checkpoints every dozen pages or so: several WAL indexes, each of several segments.
  fx = await makeMultiIndexReplica({ transactions: 12, minCheckpointPageCount: 12 });
  gen = fx.truth.at(-1)!.pos.generation;
  work = mkdtempSync(join(tmpdir(), 'stn-cli-errors-'));
}, 60_000);

afterAll(() => {
  rmSync(fx.dir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

let caseN = 0;
/** A private copy of the replica to damage, and an empty output directory. */
function copyCase(): { replica: string; outDir: string; out: string; walDir: string } {
  const dir = join(work, `case-${caseN++}`);
  const replica = join(dir, 'replica');
  cpSync(fx.replicaDir, replica, { recursive: true, preserveTimestamps: true });
  const outDir = join(dir, 'out');
  mkdirSync(outDir);
  return { replica, outDir, out: join(outDir, 'restored.db'), walDir: join(replica, 'generations', gen, 'wal') };
}

const hex8 = (n: number) => n.toString(16).padStart(8, '0');

function segments(walDir: string): string[] {
  return readdirSync(walDir).sort();
}

function expectNothingLeft(outDir: string): void {
  expect(readdirSync(outDir)).toEqual([]);
}

async function restoreFails(args: string[], outDir: string, message: RegExp): Promise<string> {
  const r = await runCli(['restore', ...args]);
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(message);
  expectNothingLeft(outDir);
  return r.stderr;
}

describe('restore: damaged replicas', () => {
  it('names the object whose content checksum fails (flipped bit)', async () => {
    const c = copyCase();
    const victim = segments(c.walDir).at(-2)!;
    const path = join(c.walDir, victim);
    const bytes = readFileSync(path);
    bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0x04; // inside the stored content checksum
    writeFileSync(path, bytes);
    await restoreFails(
      ['-o', c.out, `file://${c.replica}`],
      c.outDir,
      new RegExp(`decoding lz4 frame of ${path}: content checksum mismatch`),
    );
  });

  it('names a truncated object', async () => {
    const c = copyCase();
    const snapshots = join(c.replica, 'generations', gen, 'snapshots');
    const path = join(snapshots, readdirSync(snapshots)[0]!);
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 10));
    await restoreFails(['-o', c.out, `file://${c.replica}`], c.outDir, new RegExp(`${path}: object is truncated`));
  });

  it('names a missing WAL index', async () => {
    const c = copyCase();
    for (const f of segments(c.walDir).filter((f) => f.startsWith('00000001_'))) rmSync(join(c.walDir, f));
    const err = await restoreFails(['-o', c.out, `file://${c.replica}`], c.outDir, new RegExp(`missing WAL index: ${gen}/00000001`));
    expect(err).toMatch(/-stop-at-gap/);
  });

  it('names a missing initial segment', async () => {
    const c = copyCase();
    const second = segments(c.walDir).filter((f) => f.startsWith('00000002_'));
    expect(second.length).toBeGreaterThan(1);
    rmSync(join(c.walDir, second[0]!));
    const offset = parseInt(second[1]!.slice(9, 17), 16);
    await restoreFails(
      ['-o', c.out, `file://${c.replica}`],
      c.outDir,
      new RegExp(`missing initial wal segment: generation=${gen} index=00000002 offset=${offset}`),
    );
  });

  it('names a gap between two segments, and -stop-at-gap restores up to it', async () => {
    const c = copyCase();
    const idx = segments(c.walDir)
      .map((f) => f.slice(0, 8))
      .find((i, _, all) => all.filter((x) => x === i).length >= 3)!;
    expect(idx, 'fixture needs an index with 3+ segments').toBeDefined();
    const segs = segments(c.walDir).filter((f) => f.startsWith(`${idx}_`));
    rmSync(join(c.walDir, segs[1]!));
    await restoreFails(
      ['-o', c.out, `file://${c.replica}`],
      c.outDir,
      /wal segments of .* do not meet: the segment at offset \d+ follows data that ends at offset \d+/,
    );

    const r = await runCli(['restore', '-stop-at-gap', '-o', c.out, `file://${c.replica}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/restore stopped early at a gap/);
    // The result is the last consistent state: one of the recorded states, before the end.
    const digest = contentDigest(c.out);
    const at = fx.truth.findIndex((t) => t.digest === digest);
    expect(at, `restored state after removing ${idx}/${segs[1]}`).toBeGreaterThanOrEqual(0);
    expect(at).toBeLessThan(fx.truth.length - 1);
  });
});

describe('restore: a damaged frame inside a segment', () => {
  it.each(['checksum', 'salt'] as const)(
    'a frame with a bad %s fails with INVALID_WAL naming the index and offset; -stop-at-gap restores exactly up to it',
    async (damage) => {
      const c = copyCase();
      // A segment that starts inside its index and holds at least two frames: damage the second frame, so
      // that the damage sits in the middle of an object whose LZ4 frame is intact.
      const frame = 24 + 4096;
      const sized = await Promise.all(segments(c.walDir).map(async (f) => ({ f, len: (await readObject(join(c.walDir, f))).length })));
      const victim = sized.find(({ f, len }) => parseInt(f.slice(9, 17), 16) > 0 && len >= 2 * frame);
      expect(victim, `fixture needs a segment past offset 0 with two frames: ${JSON.stringify(sized)}`).toBeDefined();
      const index = parseInt(victim!.f.slice(0, 8), 16);
      const at = parseInt(victim!.f.slice(9, 17), 16) + frame;
      await rewriteObject(join(c.walDir, victim!.f), (plain) => {
        if (damage === 'checksum')
          plain[frame + 24 + 100] = plain[frame + 24 + 100]! ^ 0xff; // page content
        else plain[frame + 8] = plain[frame + 8]! ^ 0x01; // salt-1 of the frame header
      });
      const message = `wal index ${gen}/${hex8(index)}: ${damage} mismatch at offset ${at}; \\d+ bytes after it would be ignored`;
      await restoreFails(['-o', c.out, `file://${c.replica}`], c.outDir, new RegExp(message));
      const err = await restore([{ name: 'file', client: new FileReplicaClient({ path: c.replica }) }], { outputPath: c.out }).catch(
        (e: unknown) => e,
      );
      expect(isReplicateError(err, 'INVALID_WAL'), String(err)).toBe(true);
      expectNothingLeft(c.outDir);

      // -stop-at-gap: the state at exactly that offset, as a restore of the intact replica cut there gives it.
      const r = await runCli(['restore', '-stop-at-gap', '-o', c.out, `file://${c.replica}`]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`restore stopped early at a gap: ${message}`));
      const intact = { name: 'file', client: new FileReplicaClient({ path: fx.replicaDir }) };
      const cutOut = join(c.outDir, '..', 'cut.db');
      await executeRestore(intact, planRestore(await listGeneration(intact, gen), { index, offset: at }), {
        outputPath: cutOut,
        restoreMarker: false,
      });
      expect(contentDigest(c.out)).toBe(contentDigest(cutOut));
      expect(contentDigest(c.out)).not.toBe(fx.truth.at(-1)!.digest); // the fixture's damage does cut something off
    },
  );
});

describe('restore: no backups', () => {
  it('says the replica is empty, distinctly from a missing match; -if-replica-exists exits 0', async () => {
    const c = copyCase();
    const empty = join(c.outDir, '..', 'empty-replica');
    mkdirSync(empty);
    for (const target of [empty, join(c.outDir, '..', 'no-such-dir')]) {
      await restoreFails(['-o', c.out, `file://${target}`], c.outDir, /no matching backups found: replica is empty \(no generations\)/);
      const ok = await runCli(['restore', '-if-replica-exists', '-o', c.out, `file://${target}`]);
      expect(ok.code).toBe(0);
      expect(ok.stderr).toMatch(/no matching backups found, skipping/);
      expectNothingLeft(c.outDir);
    }
    await restoreFails(
      ['-o', c.out, '-timestamp', '2000-01-01T00:00:00Z', `file://${c.replica}`],
      c.outDir,
      /no matching backups found at or before 2000-01-01T00:00:00.000Z .*restorable: [0-9a-f]{16} /,
    );
  });
});

describe('restore: output', () => {
  it('refuses an existing output (and -if-db-not-exists exits 0)', async () => {
    const c = copyCase();
    writeFileSync(c.out, 'precious');
    const r = await runCli(['restore', '-o', c.out, `file://${c.replica}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot restore, output path already exists: ${c.out}`);
    expect(readFileSync(c.out, 'utf8')).toBe('precious');
    const skip = await runCli(['restore', '-if-db-not-exists', '-o', c.out, `file://${c.replica}`]);
    expect(skip.code).toBe(0);
    expect(readFileSync(c.out, 'utf8')).toBe('precious');
    expect(readdirSync(c.outDir)).toEqual(['restored.db']);
  });

  it('refuses a stale WAL beside the output', async () => {
    const c = copyCase();
    writeFileSync(`${c.out}-wal`, 'stale');
    const r = await runCli(['restore', '-o', c.out, `file://${c.replica}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`a WAL file for the output path already exists: ${c.out}-wal`);
  });

  it('says when the output directory is not writable, and removes directories it created', async () => {
    const c = copyCase();
    const locked = join(c.outDir, 'locked');
    mkdirSync(locked);
    const isRoot = process.getuid?.() === 0;
    // Root ignores permission bits; an immutable directory stops root too.
    if (isRoot) execFileSync('chattr', ['+i', locked]);
    else execFileSync('chmod', ['0555', locked]);
    try {
      const r = await runCli(['restore', '-o', join(locked, 'sub', 'db.sqlite'), `file://${c.replica}`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`cannot write restore output in ${locked}/sub: .*(EPERM|EACCES)`));
      expect(readdirSync(locked)).toEqual([]);
    } finally {
      if (isRoot) execFileSync('chattr', ['-i', locked]);
      else execFileSync('chmod', ['0755', locked]);
    }
    // A parent that is a file.
    writeFileSync(join(c.outDir, 'file'), 'x');
    const r2 = await runCli(['restore', '-o', join(c.outDir, 'file', 'db.sqlite'), `file://${c.replica}`]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/cannot write restore output in .*\/file: .*(ENOTDIR|EEXIST)/);
    expect(readdirSync(c.outDir).sort()).toEqual(['file', 'locked']);
  });

  it('creates missing parent directories on success', async () => {
    const c = copyCase();
    const deep = join(c.outDir, 'a', 'b', 'db.sqlite');
    const r = await runCli(['restore', '-o', deep, `file://${c.replica}`]);
    expect(r.code, r.stderr).toBe(0);
    // Only the database: no temp file, no spill file, and no meta directory (a restore by URL leaves no
    // restore marker; see restore-continuity.test.ts).
    expect(readdirSync(join(c.outDir, 'a', 'b')).sort()).toEqual(['db.sqlite']);
    expect(contentDigest(deep)).toBe(fx.truth.at(-1)!.digest);
  });
});

describe('restore: arguments and config', () => {
  const url = () => `file://${fx.replicaDir}`;

  it.each([
    [['-timestamp', 'yesterday'], /invalid -timestamp "yesterday": must be RFC 3339/],
    [['-timestamp', '2024-13-45T99:00:00Z'], /invalid -timestamp/],
    [['-index', 'zz'], /invalid -index "zz": want a hexadecimal WAL index/],
    [['-index', '1ffffffff'], /invalid -index/],
    [['-index', '1', '-timestamp', '2024-01-01T00:00:00Z'], /cannot specify index & timestamp to restore/],
    [['-index', '7fff'], /restore to index 00007fff: generation [0-9a-f]{16} ends at index/],
    [['-integrity-check', 'maybe'], /invalid -integrity-check "maybe"/],
  ])('rejects %j', async (args, re) => {
    const dir = mkdtempSync(join(work, 'args-'));
    await restoreFails(['-o', join(dir, 'x.db'), ...args, url()], dir, re);
  });

  it('needs -o with a URL, and a target', async () => {
    expect((await runCli(['restore', url()])).stderr).toMatch(/output path required/);
    expect((await runCli(['restore'])).stderr).toMatch(/database path or replica URL required/);
  });

  it('rejects unknown replica types, from a URL and from the config', async () => {
    expect((await runCli(['restore', '-o', join(work, 'u.db'), 'ftp://host/path'])).stderr).toMatch(/unknown replica type in URL: "ftp"/);
    const cfg = join(work, 'ftp.yml');
    writeFileSync(cfg, `dbs:\n  - path: ${join(work, 'db.sqlite')}\n    replicas:\n      - type: ftp\n        path: /x\n`);
    const r = await runCli(['restore', '-config', cfg, join(work, 'db.sqlite')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown replica type in config: "ftp"/);
  });

  it('says when the config file is missing, or the database is not in it', async () => {
    const missing = join(work, 'missing.yml');
    const r = await runCli(['restore', '-config', missing, '/data/db.sqlite']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`config file not found: ${missing}`);
    const viaEnv = await runCli(['restore', '/data/db.sqlite'], { env: { LITESTREAM_CONFIG: missing } });
    expect(viaEnv.stderr).toContain(`config file not found: ${missing}`);
    const cfg = join(work, 'one.yml');
    writeFileSync(cfg, `dbs:\n  - path: /data/a.db\n    replicas:\n      - path: ${fx.replicaDir}\n`);
    const r2 = await runCli(['restore', '-config', cfg, '/data/b.db']);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain('database not found in config: /data/b.db');
  });

  it('restores through a config, with ${VAR:-default} and -replica', async () => {
    const cfg = join(work, 'env.yml');
    const out = join(work, 'from-config.db');
    writeFileSync(cfg, `dbs:\n  - path: ${out}\n    replicas:\n      - name: backup\n        path: \${REPLICA_DIR:-/nonexistent}\n`);
    const bad = await runCli(['restore', '-config', cfg, '-replica', 'nope', out], { env: { REPLICA_DIR: fx.replicaDir } });
    expect(bad.stderr).toContain(`replica "nope" not found for database "${out}"`);
    const ok = await runCli(['restore', '-config', cfg, '-replica', 'backup', out], { env: { REPLICA_DIR: fx.replicaDir } });
    expect(ok.code, ok.stderr).toBe(0);
    expect(contentDigest(out)).toBe(fx.truth.at(-1)!.digest);
  });

  it('exits 1 from the real binary, with the error on stderr', async () => {
    const r = await runBin(['restore', '-timestamp', 'nope', '-o', join(work, 'bin.db'), url()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: invalid -timestamp "nope"/m);
    expect(existsSync(join(work, 'bin.db'))).toBe(false);
  });
});
