/**
 * The torture harness judges the replicators, so its own judging parts are tested here: the content
 * digest (what counts as "the same database"), the ledger, reading both tools' log lines, which new
 * generations were owed, the sqlite3 shell's commit markers, the seeded plan, and when the graceful stop
 * may send its signal.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { contentDigest, dbFacts } from '../../torture/digest.js';
import { cliScript, parseCliOutput } from '../../torture/foreign-writers.js';
import { diffKeys, ledgerLine, readLedger } from '../../torture/ledger.js';
import { Rng } from '../../torture/random.js';
import { ProcessSet } from '../../torture/procs.js';
import {
  classifyGenerations,
  isCheckpointLine,
  parseGenerationLine,
  peakPerWindow,
  ReplicatorRun,
  resolveReplicator,
} from '../../torture/replicator.js';
import { planRound } from '../../torture/schedule.js';
import { SCHEMA_SQL } from '../../torture/schema.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-torture-parts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function appDb(rows: number, order: 'up' | 'down' = 'up'): Database.Database {
  const db = new Database(':memory:');
  db.exec(SCHEMA_SQL);
  const insert = db.prepare('INSERT INTO items (id, writer, k, body, at) VALUES (?, ?, ?, ?, ?)');
  const ids = Array.from({ length: rows }, (_, i) => i + 1);
  for (const id of order === 'up' ? ids : ids.reverse()) insert.run(id, `w${id % 3}`, id, `body ${id}`, id / 10);
  db.prepare('INSERT INTO big (id, part, data) VALUES (1, 0, ?)').run(Buffer.alloc(5000, 7));
  return db;
}

describe('content digest', () => {
  it("is the same for the same content written in another order, and ignores the replicators' own tables", () => {
    const a = appDb(50, 'up');
    const b = appDb(50, 'down');
    b.exec('CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER); INSERT INTO _litestream_seq VALUES (1, 9)');
    expect(contentDigest(b)).toBe(contentDigest(a));
  });

  it('changes with any row, any blob byte, and any index, trigger or view', () => {
    const base = contentDigest(appDb(20));
    const changes = [
      "UPDATE items SET body = body || 'x' WHERE id = 7",
      'UPDATE items SET at = 0.30000000000000004 WHERE id = 3',
      'DELETE FROM items WHERE id = 20',
      'UPDATE big SET data = CAST(zeroblob(5000) AS BLOB) WHERE id = 1',
      'DROP INDEX items_writer_k',
      'DROP TRIGGER items_del',
      'DROP VIEW writer_totals',
    ];
    for (const sql of changes) {
      const db = appDb(20);
      db.exec(sql);
      expect(contentDigest(db), sql).not.toBe(base);
    }
  });

  it('reports the ledger keys, integrity and trigger-maintained counts', () => {
    const db = appDb(4);
    const f = dbFacts(db, true);
    expect(f.keys).toEqual(['items:1', 'items:2', 'items:3', 'items:4', 'big:1']);
    expect(f.integrity).toBe('ok');
    expect(f.inconsistent).toEqual([]);
    db.exec("UPDATE writer_counts SET n = n + 1 WHERE writer = 'w1'");
    expect(dbFacts(db, false).inconsistent).toEqual(['w1']);
  });
});

describe('ledger', () => {
  it('is inserts minus deletes over every writer file; doomed ids apart; a cut last line proves nothing', () => {
    const ledger = join(dir, 'ledger');
    mkdirSync(ledger);
    writeFileSync(
      join(ledger, 'a.jsonl'),
      ledgerLine({ op: 'insert', table: 'items', ids: [1, 2, 3] }) +
        ledgerLine({ op: 'delete', table: 'items', ids: [10] }) +
        '{"op":"insert","ta',
    );
    writeFileSync(
      join(ledger, 'b.jsonl'),
      ledgerLine({ op: 'insert', table: 'items', ids: [10, 11] }) + ledgerLine({ op: 'insert', table: 'big', ids: [1] }),
    );
    writeFileSync(join(ledger, 'doomed.jsonl'), ledgerLine({ op: 'doomed', table: 'items', ids: [99] }));
    const s = readLedger(ledger);
    expect([...s.committed].sort()).toEqual(['big:1', 'items:1', 'items:11', 'items:2', 'items:3']);
    expect([...s.doomed]).toEqual(['items:99']);
    expect(s.transactions).toBe(4);
    expect(s.unknownDeletes).toEqual([]);
    expect(diffKeys(s.committed, ['items:1', 'items:2', 'items:11', 'big:1', 'items:99'])).toEqual({
      missing: ['items:3'],
      extra: ['items:99'],
    });
  });
});

describe('replicator logs', () => {
  const lines = {
    litestreamCheckpoint: 'time=2026-12-01T21:41:40.643Z level=DEBUG msg=checkpoint db=/d/app.db mode=PASSIVE result=0,4,4',
    oursCheckpoint: 'time=2026-12-01T21:41:47.953Z level=DEBUG msg=checkpoint db=/d/app.db mode=PASSIVE log=4 checkpointed=4 newIndex=1',
    litestreamGeneration:
      'time=2026-12-01T21:41:40.641Z level=INFO msg="sync: new generation" db=/d/app.db generation=3607df68adcde3cd reason="no generation exists"',
    oursGeneration:
      'time=2026-12-01T21:41:49.658Z level=INFO msg="new generation" db=/d/app.db generation=cf7991f81101faa5 reason="wal overwritten by another process"',
  };
  const others = [
    'time=2026-12-01T21:41:47.953Z level=DEBUG msg="checkpoint skipped: the application holds the write lock" db=/d/app.db mode=PASSIVE',
    'time=2026-12-01T21:41:40.639Z level=DEBUG msg="copy-shadow: ok" db=/d/app.db offset=32',
    'time=2026-12-01T21:41:47.952Z level=DEBUG msg="new shadow wal index" db=/d/app.db generation=03d86e0a7487ed1a index=00000001',
  ];

  it("counts both tools' checkpoints and nothing else", () => {
    expect(isCheckpointLine(lines.litestreamCheckpoint)).toBe(true);
    expect(isCheckpointLine(lines.oursCheckpoint)).toBe(true);
    for (const l of [...others, lines.oursGeneration]) expect(isCheckpointLine(l), l).toBe(false);
  });

  it("reads both tools' new-generation lines with their reasons", () => {
    expect(parseGenerationLine(lines.litestreamGeneration)).toEqual({ generation: '3607df68adcde3cd', reason: 'no generation exists' });
    expect(parseGenerationLine(lines.oursGeneration)).toEqual({
      generation: 'cf7991f81101faa5',
      reason: 'wal overwritten by another process',
    });
    for (const l of others) expect(parseGenerationLine(l), l).toBeUndefined();
  });

  it('owes a new generation only at the first start and after a SIGKILL or crash', () => {
    const g = (generation: string) => ({ at: 0, generation, reason: 'r' });
    const got = classifyGenerations([
      { end: 'killed', generations: [g('a'), g('b')] },
      { end: 'stopped', generations: [g('c')] },
      { end: 'crashed', generations: [g('d')] },
      { generations: [g('e')] },
    ]).map((e) => [e.generation, e.expected, e.context]);
    expect(got).toEqual([
      ['a', true, 'first start'],
      ['b', false, 'mid-run'],
      ['c', true, 'restart after SIGKILL'],
      ['d', false, 'restart'],
      ['e', true, 'restart after a crash'],
    ]);
  });

  it('finds the busiest second', () => {
    expect(peakPerWindow([])).toBe(0);
    expect(peakPerWindow([0, 999, 1000, 1001, 1500, 5000])).toBe(4); // 999, 1000, 1001 and 1500 lie within one second
    expect(peakPerWindow([5, 4, 3, 2, 1])).toBe(5);
  });
});

describe('the sqlite3 shell writer', () => {
  it('counts a transaction as committed only when its marker was printed, with the ids its DELETE returned', () => {
    const script = cliScript(
      { db: 'x', ledger: 'l', name: 'cli-1', seed: 1, firstId: 100, transactions: 3, rows: [2, 2], bodyBytes: [10, 10], deleteChance: 1 },
      new Rng(3),
    );
    expect(script.transactions.map((t) => t.ids)).toEqual([
      [100, 101],
      [102, 103],
      [104, 105],
    ]);
    expect(script.sql).toContain('.bail on');
    const out = parseCliOutput(script, '7\ncommitted 0\n3\n9\ncommitted 1\n101\n');
    expect(out.committed).toEqual([
      { ids: [100, 101], deleted: [7] },
      { ids: [102, 103], deleted: [3, 9] },
    ]);
  });
});

describe('round plans', () => {
  it('are a function of the seed, and every round has a point in time, a big transaction and a doomed writer', () => {
    expect(planRound(42, 'file', 20)).toEqual(planRound(42, 'file', 20));
    expect(planRound(42, 'file', 20)).not.toEqual(planRound(43, 'file', 20));
    for (let seed = 1; seed < 50; seed++) {
      const kinds = planRound(seed, 's3', 15, { calmCheckpoints: true }).events.map((e) => e.event.kind);
      expect(kinds).toContain('pit');
      expect(kinds).toContain('big');
      expect(kinds).toContain('doomed');
      const min = planRound(seed, 's3', 15, { calmCheckpoints: true }).settings.minCheckpointPageCount;
      expect(min === undefined || min >= 100).toBe(true);
    }
  });
});

describe('the replicator command', () => {
  const tools = { nodePath: '/usr/bin/node', oursBin: '/repo/bin/stn-replicate.js', litestreamBin: '/x/litestream' };
  it('is ours, Litestream, a script run by Node, or any command', () => {
    expect(resolveReplicator('ours', tools)).toEqual({ name: 'ours', cmd: '/usr/bin/node', args: ['/repo/bin/stn-replicate.js'] });
    expect(resolveReplicator('litestream', tools)).toEqual({ name: 'litestream', cmd: '/x/litestream', args: [] });
    expect(resolveReplicator('/wt/lead/bin/stn-replicate.js', tools)).toEqual({
      name: 'lead/stn-replicate.js',
      cmd: '/usr/bin/node',
      args: ['/wt/lead/bin/stn-replicate.js'],
    });
    expect(resolveReplicator('node /wt/lead/bin/stn-replicate.js', tools)).toEqual({
      name: 'lead/stn-replicate.js',
      cmd: 'node',
      args: ['/wt/lead/bin/stn-replicate.js'],
    });
    expect(resolveReplicator('/opt/litestream-0.5/litestream', tools)).toEqual({
      name: 'litestream',
      cmd: '/opt/litestream-0.5/litestream',
      args: [],
    });
  });
});

describe('the graceful stop', () => {
  it('waits for a replicator that has printed nothing yet, so that SIGTERM finds its handler', async () => {
    // A stand-in replicator that catches SIGTERM only 400 ms after it starts, says so, and exits 0 on it
    // (like both tools: their first line comes after their handler). SIGTERM before that would end it
    // by the signal itself (CI, Node 24: a replicator restarted in a round's last moments).
    const script = `setTimeout(() => { process.on('SIGTERM', () => { console.log('final sync'); process.exit(0); }); console.log('replicating'); }, 400); setInterval(() => {}, 1000);`;
    const procs = new ProcessSet();
    const logDir = mkdtempSync(join(dir, 'stop-'));
    const crashes: string[] = [];
    const run = new ReplicatorRun(
      procs,
      { name: 'stand-in', cmd: process.execPath, args: ['-e', script] },
      '/nonexistent.yml',
      logDir,
      {},
      (m) => crashes.push(m),
    );
    try {
      run.start();
      const stopped = await run.stop(10_000);
      expect(stopped).toEqual({ code: 0, signal: null, forced: false });
      expect(readFileSync(join(logDir, 'replicator-0.log'), 'utf8')).toMatch(/replicating\n(.*\n)?final sync/);
      expect(crashes).toEqual([]);
    } finally {
      await procs.killAll();
    }
  });
});
