/**
 * Config mode with several replicas: restore picks the replica whose newest generation is newest (as
 * Litestream does), -replica picks one, and the listings name each replica; `databases` lists the config.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { makeMultiIndexReplica, type ReplicaFixture } from '../helpers/fixtures.js';
import { asLitestreamPrints, parseTable, runLitestream } from '../helpers/oracle.js';
import { contentDigest } from '../helpers/source-db.js';

const hex8 = (n: number) => n.toString(16).padStart(8, '0');

let fx: ReplicaFixture;
let dir: string;
let cfg: string;
let stale: string;
let staleDigest: string;

beforeAll(async () => {
  fx = await makeMultiIndexReplica({ transactions: 6 });
  dir = mkdtempSync(join(tmpdir(), 'stn-config-mode-'));
  // A stale copy: the same generation cut right after the upload of the first write (older updatedAt).
  // Segments at or before a recorded state's position hold exactly that state: the next write's frames
  // are uploaded after it was recorded, at later positions.
  stale = join(dir, 'stale');
  cpSync(fx.replicaDir, stale, { recursive: true, preserveTimestamps: true });
  const cut = fx.truth[1]!;
  staleDigest = cut.digest;
  const wal = join(stale, 'generations', cut.pos.generation, 'wal');
  const last = `${hex8(cut.pos.index)}_${hex8(cut.pos.offset)}.wal.lz4`;
  for (const f of readdirSync(wal).filter((f) => f > last)) rmSync(join(wal, f));
  cfg = join(dir, 'litestream.yml');
  writeFileSync(
    cfg,
    `dbs:\n  - path: ${fx.dbPath}\n    replicas:\n      - name: old\n        path: ${stale}\n      - name: current\n        url: file://${fx.replicaDir}\n  - path: /data/other.db\n    replicas:\n      - url: file:///backups/other\n`,
  );
}, 60_000);

afterAll(() => {
  rmSync(fx.dir, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

describe('config mode', () => {
  it('restores from the replica with the newest backup, and from a named one with -replica', async () => {
    const best = join(dir, 'best.db');
    const r = await runCli(['restore', '-config', cfg, '-o', best, fx.dbPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\(replica current, /);
    expect(contentDigest(best)).toBe(fx.truth.at(-1)!.digest);
    const ls = join(dir, 'ls.db');
    expect((await runLitestream(['restore', '-config', cfg, '-o', ls, fx.dbPath])).code).toBe(0);
    expect(contentDigest(ls)).toBe(contentDigest(best));

    const old = join(dir, 'old.db');
    const r2 = await runCli(['restore', '-config', cfg, '-replica', 'old', '-o', old, fx.dbPath]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr).toMatch(/\(replica old, /);
    expect(contentDigest(old)).toBe(staleDigest);
    expect(staleDigest).not.toBe(fx.truth.at(-1)!.digest); // the fixture makes the two replicas differ
    const lsOld = join(dir, 'ls-old.db');
    expect((await runLitestream(['restore', '-config', cfg, '-replica', 'old', '-o', lsOld, fx.dbPath])).code).toBe(0);
    expect(contentDigest(lsOld)).toBe(staleDigest);
  });

  it('lists per replica, like Litestream', async () => {
    for (const cmd of ['snapshots', 'wal']) {
      const ours = asLitestreamPrints(parseTable((await runCli([cmd, '-config', cfg, fx.dbPath])).stdout));
      const theirs = parseTable((await runLitestream([cmd, '-config', cfg, fx.dbPath])).stdout);
      expect(ours).toEqual(theirs);
      expect(new Set(ours.map((r) => r.replica))).toEqual(new Set(['old', 'current']));
    }
    const gens = parseTable((await runCli(['generations', '-config', cfg, '-replica', 'current', fx.dbPath])).stdout);
    expect(gens.map((g) => g.name)).toEqual(['current']);
  });

  it('lists the other replicas when one cannot be listed, prints its error and exits 1 (Litestream exits 0)', async () => {
    // A replica whose generations directory is a symlink to itself: every listing fails with ELOOP.
    const broken = join(dir, 'broken');
    mkdirSync(broken);
    symlinkSync('generations', join(broken, 'generations'));
    const cfg2 = join(dir, 'broken.yml');
    writeFileSync(
      cfg2,
      `dbs:\n  - path: ${fx.dbPath}\n    replicas:\n      - name: broken\n        path: ${broken}\n      - name: current\n        url: file://${fx.replicaDir}\n`,
    );
    for (const cmd of ['generations', 'snapshots', 'wal']) {
      const r = await runCli([cmd, '-config', cfg2, fx.dbPath]);
      expect(r.code, cmd).toBe(1);
      // One line: what could not be listed (the replica's path) and why.
      const where = join(broken, 'generations');
      const stderr = r.stderr.replace(/^restorable: .*\n/m, ''); // generations explains its table there
      expect(stderr, cmd).toMatch(
        new RegExp(
          `^error: (listing replica broken \\(${broken}\\): )?\\[file\\] listing ${where}: ELOOP: too many symbolic links encountered, scandir '${where}'\\n$`,
        ),
      );
      const alone = await runCli([cmd, '-config', cfg2, '-replica', 'current', fx.dbPath]);
      expect(alone.code, alone.stderr).toBe(0);
      const rows = (text: string) => parseTable(text).map(({ lag: _lag, ...rest }) => rest);
      expect(rows(r.stdout), cmd).toEqual(rows(alone.stdout));
      expect(rows(r.stdout).length, cmd).toBeGreaterThan(0);
      expect((await runLitestream([cmd, '-config', cfg2, fx.dbPath])).code, `litestream ${cmd}`).toBe(0);
    }
  });

  it('lists the databases of the config', async () => {
    const r = await runCli(['databases', '-config', cfg]);
    expect(r.code).toBe(0);
    expect(parseTable(r.stdout)).toEqual([
      { path: fx.dbPath, replicas: 'old,current' },
      { path: '/data/other.db', replicas: 'file' },
    ]);
    const theirs = await runLitestream(['databases', '-config', cfg]);
    expect(parseTable(r.stdout)).toEqual(parseTable(theirs.stdout));
  });
});
