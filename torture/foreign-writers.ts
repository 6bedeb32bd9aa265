/**
 * Writers that are not Node: python's sqlite3 module and the sqlite3 command-line shell. Each is a
 * process of its own that opens the database, commits a few transactions and exits (which, if it is the
 * last connection, makes SQLite checkpoint and delete the `-wal`, unless a replicator holds it open).
 */
import type { Rng } from './random.js';
import { DELETE_RANDOM_ITEMS_SQL } from './schema.js';

export interface ForeignWriterSpec {
  db: string;
  ledger: string;
  name: string;
  seed: number;
  firstId: number;
  transactions: number;
  rows: [number, number];
  bodyBytes: [number, number];
  deleteChance: number;
}

/**
 * `python3 -c PYTHON_WRITER '<json spec>'`: the ledger line is appended after `COMMIT` returned, in the
 * same format as the Node writers' (ledger.ts).
 */
export const PYTHON_WRITER = `
import json, os, random, sqlite3, sys, time
a = json.loads(sys.argv[1])
rnd = random.Random(a['seed'])
con = sqlite3.connect(a['db'], timeout=15, isolation_level=None)
nid = a['firstId']
led = open(a['ledger'], 'a')
for tx in range(a['transactions']):
    rows = rnd.randint(a['rows'][0], a['rows'][1])
    t0 = int(time.time() * 1000)
    con.execute('BEGIN IMMEDIATE')
    ids = []
    for k in range(rows):
        body = os.urandom(rnd.randint(a['bodyBytes'][0], a['bodyBytes'][1]) // 2 + 1).hex()
        con.execute('INSERT INTO items (id, writer, k, body, at) VALUES (?, ?, ?, ?, ?)', (nid, a['name'], k, body, time.time()))
        ids.append(nid)
        nid += 1
    deleted = []
    if rnd.random() < a['deleteChance']:
        deleted = [r[0] for r in con.execute(${JSON.stringify(DELETE_RANDOM_ITEMS_SQL)}).fetchall()]
    con.execute('COMMIT')
    t1 = int(time.time() * 1000)
    led.write(json.dumps({'op': 'insert', 'table': 'items', 'ids': ids, 't0': t0, 't1': t1}) + '\\n')
    if deleted:
        led.write(json.dumps({'op': 'delete', 'table': 'items', 'ids': deleted, 't0': t0, 't1': t1}) + '\\n')
    led.flush()
con.close()
led.close()
`;

export interface CliTransaction {
  ids: number[];
  deletes: boolean;
}

export interface CliScript {
  /** Fed to `sqlite3 -batch DB` on stdin. */
  sql: string;
  transactions: CliTransaction[];
}

/**
 * A script for the sqlite3 shell: stop at the first error (`.bail on`), wait on a busy database, and
 * after each `COMMIT` print a marker line, so the harness (this writer's ledger keeper) knows exactly
 * which transactions committed. Ids deleted by `DELETE … RETURNING` print one per line before it.
 */
export function cliScript(spec: ForeignWriterSpec, rng: Rng): CliScript {
  const lines = ['.bail on', '.timeout 15000', '.mode list'];
  const transactions: CliTransaction[] = [];
  let id = spec.firstId;
  for (let tx = 0; tx < spec.transactions; tx++) {
    const rows = rng.int(spec.rows[0], spec.rows[1]);
    const ids: number[] = [];
    const values: string[] = [];
    for (let k = 0; k < rows; k++) {
      const bytes = rng.int(spec.bodyBytes[0], spec.bodyBytes[1]);
      values.push(
        `(${id}, '${spec.name}', ${k}, substr(hex(randomblob(${Math.ceil(bytes / 2)})), 1, ${bytes}), (julianday('now') - 2440587.5) * 86400.0)`,
      );
      ids.push(id++);
    }
    const deletes = rng.chance(spec.deleteChance);
    lines.push('BEGIN IMMEDIATE;', `INSERT INTO items (id, writer, k, body, at) VALUES ${values.join(', ')};`);
    if (deletes) lines.push(`${DELETE_RANDOM_ITEMS_SQL};`);
    lines.push('COMMIT;', `SELECT 'committed ${tx}';`);
    transactions.push({ ids, deletes });
  }
  return { sql: `${lines.join('\n')}\n`, transactions };
}

export interface CliOutcome {
  /** Per committed transaction: its inserted ids and the ids its DELETE returned. */
  committed: { ids: number[]; deleted: number[] }[];
}

/** Reads the shell's output back into committed transactions (only those whose marker was printed). */
export function parseCliOutput(script: CliScript, stdout: string): CliOutcome {
  const committed: CliOutcome['committed'] = [];
  let pendingDeleted: number[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^committed (\d+)$/.exec(line.trim());
    if (m) {
      const tx = script.transactions[Number(m[1])];
      if (tx) committed.push({ ids: tx.ids, deleted: pendingDeleted });
      pendingDeleted = [];
    } else if (/^\d+$/.test(line.trim())) pendingDeleted.push(Number(line.trim()));
  }
  return { committed };
}
