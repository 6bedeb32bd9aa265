/**
 * The ledger: what the application committed, written by each writer to its own file, one JSON line per
 * transaction, appended only after COMMIT returned (so a line is proof of a commit; a writer killed
 * before its line is written can only make the ledger smaller, never wrong). Deletions are recorded the
 * same way. A writer that is about to be killed mid-transaction records the ids it inserted as `doomed`
 * before it is killed: those must never appear anywhere.
 *
 * Row keys are `table:id` (ids are unique per table for the whole round: every writer gets its own range).
 */
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export type LedgerOp = 'insert' | 'delete' | 'doomed';

export interface LedgerEntry {
  op: LedgerOp;
  table: string;
  ids: number[];
  /** Wall-clock ms before BEGIN and after COMMIT returned (the writer's own view). */
  t0?: number;
  t1?: number;
}

export function ledgerLine(e: LedgerEntry): string {
  return `${JSON.stringify(e)}\n`;
}

/** Appends one entry (synchronously: the line is in the file before the writer does anything else). */
export function appendLedger(file: string, e: LedgerEntry): void {
  appendFileSync(file, ledgerLine(e));
}

export interface LedgerState {
  /** Keys inserted and not deleted: what the database must hold. */
  committed: Set<string>;
  /** Keys of transactions that were killed before COMMIT: never in any database. */
  doomed: Set<string>;
  transactions: number;
  /** Deletions of keys no ledger inserted (a writer deleted a row that was never recorded). */
  unknownDeletes: string[];
}

export function rowKey(table: string, id: number): string {
  return `${table}:${id}`;
}

/** Reads every ledger file of a directory. Order across files does not matter: ids are never reused. */
export function readLedger(dir: string): LedgerState {
  const inserted = new Set<string>();
  const deleted = new Set<string>();
  const doomed = new Set<string>();
  let transactions = 0;
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.jsonl')) : [];
  for (const f of files) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      let e: LedgerEntry;
      try {
        e = JSON.parse(line) as LedgerEntry;
      } catch {
        continue; // a line cut by a kill: that writer had not finished recording, so it proves nothing
      }
      const keys = e.ids.map((id) => rowKey(e.table, id));
      if (e.op === 'doomed') keys.forEach((k) => doomed.add(k));
      else {
        transactions++;
        keys.forEach((k) => (e.op === 'insert' ? inserted : deleted).add(k));
      }
    }
  }
  const committed = new Set([...inserted].filter((k) => !deleted.has(k)));
  const unknownDeletes = [...deleted].filter((k) => !inserted.has(k));
  return { committed, doomed, transactions, unknownDeletes };
}

export interface SetDiff {
  missing: string[];
  extra: string[];
}

/** What `actual` lacks of `expected`, and what it has beyond it. */
export function diffKeys(expected: Set<string>, actual: Iterable<string>): SetDiff {
  const seen = new Set<string>();
  const extra: string[] = [];
  for (const k of actual) {
    seen.add(k);
    if (!expected.has(k)) extra.push(k);
  }
  const missing = [...expected].filter((k) => !seen.has(k));
  return { missing, extra };
}
