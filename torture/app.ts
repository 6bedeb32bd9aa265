/**
 * The application, as separate processes that come and go (the harness itself never opens the live
 * database while a round runs: a connection held by the harness would keep the `-wal` alive and hide
 * exactly the bugs this suite looks for). One role per process, given as a JSON argument:
 *
 *   init        create the database (WAL mode) and the schema
 *   writer      a few transactions (short-lived) or until told to stop (long-lived, stdin control)
 *   big         delete the previous big blobs, then one transaction of tens of MB of blobs
 *   doomed      insert rows in a transaction and wait to be SIGKILLed before COMMIT
 *   reader      a read transaction held open for a while
 *   checkpoint  the application's own `PRAGMA wal_checkpoint(MODE)`
 *   vacuum      VACUUM
 *   facts       (read-only) content digest, ledger keys, integrity check: for the live database and restores
 *
 * Progress goes to stdout as JSON lines; the ledger is written after each COMMIT returns.
 */
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { dbFacts } from './digest.js';
import { appendLedger } from './ledger.js';
import { Rng } from './random.js';
import { DELETE_RANDOM_ITEMS_SQL, SCHEMA_SQL } from './schema.js';
import type { AppRole } from './app-roles.js';

const BUSY_MS = 15_000;

function say(ev: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ ev, ...extra })}\n`);
}

function open(path: string): Database.Database {
  return new Database(path, { timeout: BUSY_MS, fileMustExist: true });
}

function text(rng: Rng, lo: number, hi: number): string {
  const n = rng.int(lo, hi);
  return randomBytes(Math.ceil(n / 2))
    .toString('hex')
    .slice(0, n); // compresses about 2:1, like real data
}

function isBusy(e: unknown): boolean {
  return /SQLITE_BUSY|database is locked/i.test(String((e as { code?: string })?.code ?? e));
}

/** Runs `fn` in BEGIN IMMEDIATE … COMMIT, retrying when the write lock stays busy past the timeout. */
async function transaction<T>(db: Database.Database, fn: () => T): Promise<{ result: T; t0: number; t1: number }> {
  for (;;) {
    const t0 = Date.now();
    try {
      db.exec('BEGIN IMMEDIATE');
    } catch (e) {
      if (!isBusy(e)) throw e;
      await sleep(50);
      continue;
    }
    try {
      const result = fn();
      db.exec('COMMIT');
      return { result, t0, t1: Date.now() };
    } catch (e) {
      if (db.inTransaction) db.exec('ROLLBACK');
      throw e;
    }
  }
}

async function writer(r: Extract<AppRole, { role: 'writer' }>): Promise<void> {
  const rng = new Rng(r.seed);
  const db = open(r.db);
  if (r.synchronousNormal) db.pragma('synchronous = NORMAL');
  const insert = db.prepare('INSERT INTO items (id, writer, k, body, at) VALUES (?, ?, ?, ?, ?)');
  const del = db.prepare(DELETE_RANDOM_ITEMS_SQL).pluck();
  let paused = false;
  let stopping = false;
  let resumed: () => void = () => undefined;
  const rl = r.control ? createInterface({ input: process.stdin }) : undefined;
  if (rl) {
    process.on('SIGTERM', () => (stopping = true));
    rl.on('line', (l) => {
      if (l === 'pause') paused = true;
      else if (l === 'resume') {
        paused = false;
        resumed();
      } else if (l === 'stop') {
        stopping = true;
        resumed();
      }
    });
    rl.on('close', () => {
      stopping = true; // the harness is gone
      resumed();
    });
  }
  let id = r.firstId;
  for (let tx = 0; r.transactions === undefined || tx < r.transactions; tx++) {
    if (paused) {
      say('paused'); // between transactions, the connection stays open and idle
      await new Promise<void>((res) => (resumed = res));
    }
    if (stopping) break;
    const rows = rng.int(r.rows[0], r.rows[1]);
    const ids: number[] = [];
    const doDelete = rng.chance(r.deleteChance);
    const {
      result: deleted,
      t0,
      t1,
    } = await transaction(db, () => {
      for (let k = 0; k < rows; k++) {
        insert.run(id, r.name, k, text(rng, r.bodyBytes[0], r.bodyBytes[1]), Date.now() / 1000);
        ids.push(id++);
      }
      return doDelete ? (del.all() as number[]) : [];
    });
    appendLedger(r.ledger, { op: 'insert', table: 'items', ids, t0, t1 });
    if (deleted.length > 0) appendLedger(r.ledger, { op: 'delete', table: 'items', ids: deleted, t0, t1 });
    if (r.pauseMs[1] > 0) await sleep(rng.int(r.pauseMs[0], r.pauseMs[1]));
  }
  db.close();
  rl?.close();
  process.stdin.destroy(); // an open stdin pipe would keep this process alive
  say('done', { nextId: id });
}

async function big(r: Extract<AppRole, { role: 'big' }>): Promise<void> {
  const db = open(r.db);
  const dropped = await transaction(db, () => db.prepare('DELETE FROM big RETURNING id').pluck().all() as number[]);
  appendLedger(r.ledger, { op: 'delete', table: 'big', ids: dropped.result, t0: dropped.t0, t1: dropped.t1 });
  say('dropped', { n: dropped.result.length });
  const insert = db.prepare('INSERT INTO big (id, part, data) VALUES (?, ?, ?)');
  const ids: number[] = [];
  const { t0, t1 } = await transaction(db, () => {
    for (let p = 0; p < r.parts; p++) {
      insert.run(r.firstId + p, p, randomBytes(r.partBytes)); // incompressible: the replica gets every byte
      ids.push(r.firstId + p);
      say('part', { n: p + 1 }); // the harness may kill the replicator while this transaction is open
    }
  });
  appendLedger(r.ledger, { op: 'insert', table: 'big', ids, t0, t1 });
  say('committed', { bytes: r.parts * r.partBytes });
  db.close();
}

async function doomed(r: Extract<AppRole, { role: 'doomed' }>): Promise<void> {
  const db = open(r.db);
  db.pragma('cache_size = 20'); // a tiny page cache: the open transaction spills uncommitted frames into the WAL
  const insert = db.prepare('INSERT INTO items (id, writer, k, body, at) VALUES (?, ?, ?, ?, ?)');
  const rng = new Rng(r.firstId);
  db.exec('BEGIN IMMEDIATE');
  const ids: number[] = [];
  for (let k = 0; k < r.rows; k++) {
    insert.run(r.firstId + k, 'doomed', k, text(rng, 1000, 4000), Date.now() / 1000);
    ids.push(r.firstId + k);
  }
  appendLedger(r.ledger, { op: 'doomed', table: 'items', ids });
  say('intx', { rows: ids.length });
  await sleep(120_000); // the harness kills this process long before; never commits
  db.exec('ROLLBACK');
}

async function reader(r: Extract<AppRole, { role: 'reader' }>): Promise<void> {
  const db = open(r.db);
  db.exec('BEGIN');
  const n = db.prepare('SELECT count(*) FROM items').pluck().get();
  say('reading', { n });
  await sleep(r.holdMs);
  db.exec('COMMIT');
  db.close();
}

function checkpoint(r: Extract<AppRole, { role: 'checkpoint' }>): void {
  const db = new Database(r.db, { timeout: 2_000, fileMustExist: true }); // the app's own checkpoints give up sooner than its writes
  const [res] = db.pragma(`wal_checkpoint(${r.mode})`) as { busy: number; log: number; checkpointed: number }[];
  db.close();
  say('checkpoint', { mode: r.mode, ...res });
}

function vacuum(r: Extract<AppRole, { role: 'vacuum' }>): void {
  const db = open(r.db);
  db.exec('VACUUM');
  db.close();
  say('vacuumed');
}

function init(r: Extract<AppRole, { role: 'init' }>): void {
  const db = new Database(r.db, { timeout: BUSY_MS });
  db.pragma('journal_mode = WAL');
  db.exec(SCHEMA_SQL);
  db.close();
  say('ready');
}

function facts(r: Extract<AppRole, { role: 'facts' }>): void {
  const db = new Database(r.db, { readonly: true, fileMustExist: true, timeout: BUSY_MS });
  try {
    say('facts', { ...dbFacts(db, r.integrity) });
  } finally {
    db.close();
  }
}

const role = JSON.parse(process.argv[2] ?? '{}') as AppRole;
try {
  switch (role.role) {
    case 'init':
      init(role);
      break;
    case 'writer':
      await writer(role);
      break;
    case 'big':
      await big(role);
      break;
    case 'doomed':
      await doomed(role);
      break;
    case 'reader':
      await reader(role);
      break;
    case 'checkpoint':
      checkpoint(role);
      break;
    case 'vacuum':
      vacuum(role);
      break;
    case 'facts':
      facts(role);
      break;
    default:
      throw new Error(`unknown role ${JSON.stringify(role)}`);
  }
} catch (e) {
  say('error', { message: String((e as Error)?.message ?? e) });
  process.exitCode = 1;
}
