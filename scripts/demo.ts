/**
 * `npm run demo`: the README's first command. `stn-replicate replicate` follows a small database and
 * ships it to a local file replica while the demo writes to it; then the replica is listed and restored
 * to a point in time and to the latest state.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..', '..');
const demo = join(root, 'demo');
const dbPath = join(demo, 'station.db');
const replicaDir = join(demo, 'replica');
const cli = join(root, 'bin', 'stn-replicate.js');

function run(args: string[]): void {
  console.log(`\n$ stn-replicate ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`stn-replicate ${args[0]} exited with ${r.status}`);
}

function count(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM agents').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

async function main(): Promise<void> {
  rmSync(demo, { recursive: true, force: true });
  mkdirSync(demo, { recursive: true });
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT, state TEXT)');

  const config = join(demo, 'litestream.yml');
  writeFileSync(
    config,
    `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: file\n        path: ${replicaDir}\n        sync-interval: 100ms\n`,
  );
  console.log(`$ stn-replicate replicate -config ${config}    (in the background)`);
  const replicator = spawn(process.execPath, [cli, 'replicate', '-config', config], { stdio: ['ignore', 'inherit', 'inherit'] });

  const insert = db.prepare('INSERT INTO agents (name, state) VALUES (?, ?)');
  let pointInTime = '';
  for (let batch = 1; batch <= 5; batch++) {
    await sleep(600);
    db.transaction(() => {
      for (let i = 0; i < 20; i++) insert.run(`agent-${batch}-${i}`, JSON.stringify({ batch, step: i }));
    })();
    console.log(`batch ${batch}: ${batch * 20} rows`);
    if (batch === 3) {
      await sleep(500); // let the replica catch up, then remember this moment
      pointInTime = new Date().toISOString();
      console.log(`point in time: ${pointInTime} (60 rows)`);
    }
  }
  replicator.kill('SIGTERM'); // a final sync uploads the last batch

  await new Promise((r) => replicator.once('exit', r));
  db.close();

  const url = `file://${replicaDir}`;
  run(['generations', url]);
  run(['snapshots', url]);
  run(['restore', '-o', join(demo, 'restored-at-point.db'), '-timestamp', pointInTime, url]);
  run(['restore', '-o', join(demo, 'restored-latest.db'), url]);
  console.log(`\nrows at ${pointInTime}: ${count(join(demo, 'restored-at-point.db'))} (expected 60)`);
  console.log(`rows in the latest restore: ${count(join(demo, 'restored-latest.db'))} (expected 100)`);
}

await main();
