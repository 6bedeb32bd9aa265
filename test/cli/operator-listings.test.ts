/**
 * The listings as an operator reads them, from the built binary: `generations` oldest first, the current
 * generation marked, no negative lag, and a start/end that is exactly the restorable range (proved by
 * restoring at the printed start and one millisecond before it); `snapshots` and `wal` with milliseconds.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { encodeLz4Frame } from '../../src/internal/lz4-frame.js';
import { runBin } from '../helpers/cli.js';
import { parseTable, runLitestream } from '../helpers/oracle.js';

/** Generation names whose name order is not their time order (ours count down; these are picked so). */
const OLD = 'ffffffffffffffff';
const ORPHAN = '4444444444444444'; // WAL only, no snapshot: nothing restorable
const MIDDLE = '8888888888888888';
const NEW = '0000000000000001';
// Fractions of a second that utimes stores exactly (a binary fraction survives its float seconds).
const T = {
  old: new Date('2026-03-01T10:00:00.125Z'),
  orphan: new Date('2026-03-01T10:10:00.000Z'),
  middleEarlyWal: new Date('2026-03-01T10:30:00.000Z'), // a segment kept from before the oldest kept snapshot
  middle: new Date('2026-03-01T11:00:00.500Z'),
  new: new Date('2026-03-01T12:00:00.750Z'),
};

let dir: string;
let replicaDir: string;
let url: string;
let dbPath: string;

/** A database file whose one row names `label`, LZ4-framed as a snapshot. */
function snapshotBody(label: string): AsyncIterable<Buffer> {
  const path = join(dir, `src-${label}.db`);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE which (label TEXT)');
  db.prepare('INSERT INTO which VALUES (?)').run(label);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const bytes = readFileSync(path);
  return encodeLz4Frame(
    (async function* () {
      yield bytes;
    })(),
  );
}

function setTime(path: string, t: Date): void {
  utimesSync(path, t, t);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stn-operator-listings-'));
  replicaDir = join(dir, 'replica');
  url = `file://${replicaDir}`;
  dbPath = join(dir, 'app.db');
  const client = new FileReplicaClient({ path: replicaDir });
  const gens = join(replicaDir, 'generations');
  await client.writeSnapshot(OLD, 0, snapshotBody('old'));
  setTime(join(gens, OLD, 'snapshots', '00000000.snapshot.lz4'), T.old);
  await client.writeWalSegment(
    { generation: ORPHAN, index: 0, offset: 0 },
    encodeLz4Frame(
      (async function* () {
        yield Buffer.alloc(32);
      })(),
    ),
  );
  setTime(join(gens, ORPHAN, 'wal', '00000000_00000000.wal.lz4'), T.orphan);
  // Retention kept index 0's segment (older) below the oldest snapshot it kept, at index 1.
  await client.writeWalSegment(
    { generation: MIDDLE, index: 0, offset: 0 },
    encodeLz4Frame(
      (async function* () {
        yield Buffer.alloc(32);
      })(),
    ),
  );
  setTime(join(gens, MIDDLE, 'wal', '00000000_00000000.wal.lz4'), T.middleEarlyWal);
  await client.writeSnapshot(MIDDLE, 1, snapshotBody('middle'));
  setTime(join(gens, MIDDLE, 'snapshots', '00000001.snapshot.lz4'), T.middle);
  await client.writeSnapshot(NEW, 0, snapshotBody('new'));
  setTime(join(gens, NEW, 'snapshots', '00000000.snapshot.lz4'), T.new);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function labelOf(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT label FROM which').get() as { label: string }).label;
  } finally {
    db.close();
  }
}

describe('generations', () => {
  it('lists oldest first with millisecond times, marks the newest as current without local state, and says what the range means', async () => {
    const r = await runBin(['generations', url]);
    expect(r.code, r.stderr).toBe(0);
    const rows = parseTable(r.stdout);
    expect(rows.map((g) => [g.generation, g.start, g.end, g.status])).toEqual([
      [OLD, T.old.toISOString(), T.old.toISOString(), ''],
      [ORPHAN, T.orphan.toISOString(), T.orphan.toISOString(), 'no-snapshot'],
      // Its start is its oldest snapshot, not the older WAL segment Litestream would print.
      [MIDDLE, T.middle.toISOString(), T.middle.toISOString(), ''],
      [NEW, T.new.toISOString(), T.new.toISOString(), 'current'],
    ]);
    // An aligned table: every row's cells start where the header's do.
    const lines = r.stdout.trimEnd().split('\n');
    for (const h of ['generation', 'lag', 'start', 'end']) {
      const at = lines[0]!.indexOf(h);
      for (const l of lines.slice(1)) expect(l.slice(at - 2, at + 1), l).toMatch(/^ {2}\S$/);
    }
    expect(r.stderr).toBe(
      "restorable: any -timestamp from a generation's start to its end (a later one restores its end); current: the newest generation of each replica (a restore of the latest state takes the newest across replicas)\n",
    );
  });

  it('every printed start restores, as printed, and the millisecond before it does not reach that generation', async () => {
    const rows = parseTable((await runBin(['generations', url])).stdout).filter((g) => g.status !== 'no-snapshot');
    const expected: Record<string, string> = { [OLD]: 'old', [MIDDLE]: 'middle', [NEW]: 'new' };
    for (const [i, g] of rows.entries()) {
      const out = join(dir, `at-start-${g.generation}.db`);
      const r = await runBin(['restore', '-timestamp', g.start!, '-o', out, url]);
      expect(r.code, r.stderr).toBe(0);
      expect(labelOf(out), g.generation).toBe(expected[g.generation!]);
      const before = new Date(Date.parse(g.start!) - 1).toISOString();
      const early = await runBin(['restore', '-timestamp', before, '-o', join(dir, `before-${g.generation}.db`), url]);
      if (i === 0) {
        expect(early.code).toBe(1);
        expect(early.stderr).toMatch(
          /^error: no matching backups found at or before .*: the timestamp is before the earliest restorable point/m,
        );
      } else {
        // Before this generation's first snapshot: the previous generation's end.
        expect(early.code, early.stderr).toBe(0);
        expect(labelOf(join(dir, `before-${g.generation}.db`))).toBe(expected[rows[i - 1]!.generation!]);
      }
    }
  });

  it('in config mode marks the generation the local database is on, and never prints a negative lag', async () => {
    // The local meta directory says the database is on MIDDLE; its files last changed before every upload
    // (a clock step back, or a copy from another machine), which Litestream prints as a negative lag.
    writeFileSync(dbPath, '');
    setTime(dbPath, new Date(T.old.getTime() - 3_600_000));
    mkdirSync(join(dir, '.app.db-litestream'), { recursive: true });
    writeFileSync(join(dir, '.app.db-litestream', 'generation'), `${MIDDLE}\n`);
    const cfg = join(dir, 'litestream.yml');
    writeFileSync(cfg, `dbs:\n  - path: ${dbPath}\n    replicas:\n      - url: ${url}\n`);

    const r = await runBin(['generations', '-config', cfg, dbPath]);
    expect(r.code, r.stderr).toBe(0);
    const rows = parseTable(r.stdout);
    expect(rows.map((g) => [g.generation, g.status])).toEqual([
      [OLD, ''],
      [ORPHAN, 'no-snapshot'],
      [MIDDLE, 'current'],
      [NEW, ''],
    ]);
    expect(rows.map((g) => g.lag)).toEqual(['0s', '0s', '0s', '0s']);
    expect(r.stderr).toContain(`current: the generation ${dbPath} is on (${MIDDLE})`);

    const theirs = parseTable((await runLitestream(['generations', '-config', cfg, dbPath])).stdout);
    expect(theirs.length).toBe(4);
    expect(
      theirs.every((g) => g.lag!.startsWith('-')),
      JSON.stringify(theirs),
    ).toBe(true);
  });
});

describe('snapshots and wal', () => {
  it('print creation times with milliseconds', async () => {
    const snaps = await runBin(['snapshots', url]);
    expect(snaps.code, snaps.stderr).toBe(0);
    expect(parseTable(snaps.stdout).map((s) => [s.generation, s.index, s.created])).toEqual([
      [NEW, '0', T.new.toISOString()],
      [MIDDLE, '1', T.middle.toISOString()],
      [OLD, '0', T.old.toISOString()],
    ]);
    const wal = await runBin(['wal', url]);
    expect(wal.code, wal.stderr).toBe(0);
    expect(new Set(parseTable(wal.stdout).map((s) => `${s.generation} ${s.created}`))).toEqual(
      new Set([`${ORPHAN} ${T.orphan.toISOString()}`, `${MIDDLE} ${T.middleEarlyWal.toISOString()}`]),
    );
  });
});
