/**
 * What a restore hands over: a database that passed SQLite's check (`-integrity-check`, quick by
 * default), and never a file that replaced one appearing at the output path meanwhile (the result is
 * hard-linked into place). Replicas here are a single snapshot of a database built to be damaged in a
 * known way, with the `sqlite3` shell's writable schema.
 */
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { isReplicateError } from '../../src/errors.js';
import { encodeLz4Frame } from '../../src/internal/lz4-frame.js';
import { restore } from '../../src/replica/restore.js';
import { runCli } from '../helpers/cli.js';
import { runLitestream } from '../helpers/oracle.js';
import { contentDigest, integrityErrors } from '../helpers/source-db.js';
import { sqliteOnce } from '../helpers/sqlite-cli.js';

const GEN = '0123456789abcdef';
let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'stn-restore-result-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
/** A database made by the sqlite3 shell from `sql`, stored as the only snapshot of a new file replica. */
async function snapshotReplica(sql: string): Promise<{ url: string; source: string; outDir: string; out: string }> {
  const dir = join(work, `case-${n++}`);
  mkdirSync(dir);
  const source = join(dir, 'source.db');
  await sqliteOnce(source, `PRAGMA journal_mode = WAL;\n${sql}`);
  const replica = join(dir, 'replica');
  await new FileReplicaClient({ path: replica }).writeSnapshot(GEN, 0, encodeLz4Frame(createReadStream(source)));
  const outDir = join(dir, 'out');
  mkdirSync(outDir);
  return { url: `file://${replica}`, source, outDir, out: join(outDir, 'restored.db') };
}

const TWO_TABLES = `
CREATE TABLE t (x); CREATE INDEX ti ON t (x); CREATE TABLE u (x); CREATE INDEX ui ON u (x);
INSERT INTO t SELECT value FROM generate_series(1, 500); INSERT INTO u SELECT value + 1000 FROM generate_series(1, 500);
PRAGMA writable_schema = ON;`;
/** The schema forgets table u and its index: their pages belong to nothing (both checks see it). */
const ORPHAN_PAGES = `${TWO_TABLES}\nDELETE FROM sqlite_master WHERE name IN ('u', 'ui');`;
/**
 * The two indexes swap b-trees: the structure is sound and each holds as many entries as its table has
 * rows, but the wrong values (only the full check compares index content with the table).
 */
const SWAPPED_INDEXES = `${TWO_TABLES}
CREATE TEMP TABLE roots AS SELECT name, rootpage FROM sqlite_master WHERE name IN ('ti', 'ui');
UPDATE sqlite_master SET rootpage = (SELECT rootpage FROM roots WHERE roots.name = iif(sqlite_master.name = 'ti', 'ui', 'ti'))
  WHERE name IN ('ti', 'ui');`;

describe('restore -integrity-check', () => {
  it('quick (the default) and full reject a database with pages that belong to nothing: exit 1, the check named, nothing left', async () => {
    const c = await snapshotReplica(ORPHAN_PAGES);
    for (const [flags, pragma] of [
      [[], 'quick_check'],
      [['-integrity-check', 'quick'], 'quick_check'],
      [['-integrity-check', 'full'], 'integrity_check'],
    ] as const) {
      const r = await runCli(['restore', ...flags, '-o', c.out, c.url]);
      expect(r.code, `${flags.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^error: restored database failed ${pragma}: [\\s\\S]*never used`, 'm'));
      expect(readdirSync(c.outDir), flags.join(' ')).toEqual([]);
    }
    const err = await restore([{ name: 'file', client: new FileReplicaClient({ path: c.url.slice(7) }) }], { outputPath: c.out }).catch(
      (e: unknown) => e,
    );
    expect(isReplicateError(err, 'INTEGRITY_CHECK_FAILED'), String(err)).toBe(true);
    expect(readdirSync(c.outDir)).toEqual([]);
  });

  it('none skips the check: the damaged database is restored as it was stored', async () => {
    const c = await snapshotReplica(ORPHAN_PAGES);
    const r = await runCli(['restore', '-integrity-check', 'none', '-o', c.out, c.url]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(c.out).equals(readFileSync(c.source))).toBe(true);
    expect(integrityErrors(c.out).join('\n')).toMatch(/never used/);
  });

  it('full finds index content that quick does not check', async () => {
    const c = await snapshotReplica(SWAPPED_INDEXES);
    const full = await runCli(['restore', '-integrity-check', 'full', '-o', c.out, c.url]);
    expect(full.code, full.stderr).toBe(1);
    expect(full.stderr).toMatch(/^error: restored database failed integrity_check: row \d+ missing from index (ti|ui)/m);
    expect(readdirSync(c.outDir)).toEqual([]);
    const quick = await runCli(['restore', '-o', c.out, c.url]);
    expect(quick.code, quick.stderr).toBe(0);
    expect(contentDigest(c.out)).toBe(contentDigest(c.source));
  });

  it("the oracle's own check catches what Litestream restores without one", async () => {
    const c = await snapshotReplica(ORPHAN_PAGES);
    // Litestream checks nothing and exits 0; runLitestream's integrity check must fail the test.
    await expect(runLitestream(['restore', '-o', c.out, c.url])).rejects.toThrow(/fails integrity_check: [\s\S]*never used/);
    expect(existsSync(c.out)).toBe(true);
  });
});

describe('restore output that appears while restoring', () => {
  it('is never overwritten: the restore fails with OUTPUT_EXISTS and leaves that file and nothing else', async () => {
    const c = await snapshotReplica('CREATE TABLE t (x); INSERT INTO t SELECT value FROM generate_series(1, 100);');
    let wrote = false;
    const err = await restore([{ name: 'file', client: new FileReplicaClient({ path: c.url.slice(7) }) }], {
      outputPath: c.out,
      onProgress: (p) => {
        // Another process creates the output after the restore checked that it was free.
        if (p.phase === 'apply' && !wrote) {
          writeFileSync(c.out, 'precious');
          wrote = true;
        }
      },
    }).catch((e: unknown) => e);
    expect(wrote).toBe(true);
    expect(isReplicateError(err, 'OUTPUT_EXISTS'), String(err)).toBe(true);
    expect((err as Error).message).toBe(`cannot restore, output path already exists: ${c.out}`);
    expect(readFileSync(c.out, 'utf8')).toBe('precious');
    expect(readdirSync(c.outDir)).toEqual(['restored.db']);
  });
});
