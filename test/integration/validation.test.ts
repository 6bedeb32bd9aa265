/**
 * validation-interval: the replica restored at the live database's position must be the live database
 * page for page. A healthy replica passes while the application keeps writing (through checkpoints and
 * new WAL indexes); a snapshot whose bytes were changed (re-encoded, so LZ4 finds nothing wrong) is a
 * mismatch; an object that is damaged is an error. Every outcome is counted.
 */
import { readdirSync, writeFileSync, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { collect } from '../../src/client/replica-client.js';
import type { ValidationResult } from '../../src/replica/replica.js';
import { startReplication, type Replication } from '../../src/replication.js';
import type { WalShipper } from '../../src/shipper/wal-shipper.js';
import { comparePos, type Pos } from '../../src/pos.js';
import { digestDatabaseFile, type DatabaseDigest } from '../../src/shipper/database-digest.js';
import { runCli } from '../helpers/cli.js';
import { recordingLogger } from '../helpers/recording-logger.js';
import { rewriteObject } from '../helpers/replica-objects.js';
import { openSourceDb, textOf } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-validate-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

async function setup(
  opts: { validationIntervalMs?: number; prefillRows?: number; inline?: boolean; client?: (dir: string) => FileReplicaClient } = {},
) {
  const dir = tmp();
  const dbPath = join(dir, 'app.db');
  const replicaDir = join(dir, 'replica');
  const app = openSourceDb(dbPath);
  if (opts.prefillRows) {
    // Rows already in the database file (WAL checkpointed away) when replication starts.
    const fill = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    app.transaction(() => {
      for (let i = 0; i < opts.prefillRows!; i++) fill.run(textOf(1e6 + i, 1500), i % 7);
    })();
    app.pragma('wal_checkpoint(TRUNCATE)');
  }
  const log = recordingLogger();
  const r = await startReplication({
    dbPath,
    replicas: [
      {
        name: 'backup',
        client: opts.client?.(replicaDir) ?? new FileReplicaClient({ path: replicaDir }),
        syncIntervalMs: 10,
        retentionMs: 0,
        validationIntervalMs: opts.validationIntervalMs,
      },
    ],
    minCheckpointPageCount: 20,
    logger: log,
    inline: opts.inline,
  });
  open.push(r);
  const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
  let seq = 0;
  const write = (rows: number) =>
    app.transaction(() => {
      for (let i = 0; i < rows; i++) insert.run(textOf(seq++, 1500), seq % 7);
    })();
  return { dir, dbPath, replicaDir, app, log, r, replica: r.replicas[0]!, write };
}

/** Waits (while the application keeps writing) until the shipper is past WAL index `index`. */
async function untilLaterIndex(r: Replication, index: number, timeoutMs = 30_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while ((r.shipper.pos()?.index ?? -1) <= index) {
    if (performance.now() > until) throw new Error(`the shipper stayed in WAL index ${index} for ${timeoutMs} ms while the app wrote`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Digest of the replica's latest state, restored by the CLI with no integrity check. */
async function restoredDigest(replicaDir: string, out: string): Promise<DatabaseDigest> {
  const r = await runCli(['restore', '-integrity-check', 'none', '-o', out, `file://${replicaDir}`]);
  expect(r.code, r.stderr).toBe(0);
  return digestDatabaseFile(out);
}

describe('validation', () => {
  it('passes on a healthy replica while the application writes, across checkpoints and WAL indexes', async () => {
    const s = await setup();
    const results: ValidationResult[] = [];
    // Writes keep landing between the pin and the restore: the restore must stop at the pinned offset.
    const writer = setInterval(() => s.write(3), 2);
    try {
      for (let round = 0; round < 6; round++) {
        s.write(40); // past minCheckpointPageCount: checkpoints and new indexes happen along the way
        // Half-way, the shipper must have moved to a later WAL index (a checkpoint restarted the WAL) before
        // validating again: on a loaded machine six rounds can otherwise all fall inside one index.
        if (round === 3) await untilLaterIndex(s.r, results[0]!.position.index);
        results.push(await s.replica.validate());
      }
    } finally {
      clearInterval(writer);
    }
    expect(results.map((x) => x.status)).toEqual(Array(6).fill('ok'));
    for (const x of results) expect(x.actual).toEqual(x.expected);
    // The positions moved through more than one WAL index, so restores cut at an offset were checked.
    expect(new Set(results.map((x) => x.position.index)).size).toBeGreaterThan(1);
    expect(s.replica.validations).toEqual({ ok: 6, mismatch: 0, error: 0 });
    expect(s.log.lines.filter((l) => l.msg === 'validation ok')).toHaveLength(6);
    // Nothing is left behind in the meta directory.
    expect(existsSync(join(s.dir, '.app.db-litestream', 'validation', 'backup'))).toBe(false);
  });

  it('pins again when the replica took its snapshot after the pin (its first sync), and passes', async () => {
    // CI failure: the first validation pinned before the replica's first sync, which took the
    // generation's snapshot at the shipper's end by then, past the pin: no restore can stop at the pin
    // (a snapshot is the database at the position it was taken, and it is the generation's only one).
    // Here the replica's first sync is held until the app has written past the pin, every time.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let first = true;
    class FirstListingHeld extends FileReplicaClient {
      override async *snapshots(generation: string) {
        if (first) {
          first = false;
          await held;
        }
        yield* super.snapshots(generation);
      }
    }
    const s = await setup({ inline: true, client: (dir) => new FirstListingHeld({ path: dir }) });
    s.write(5);
    const shipper = s.r.shipper as WalShipper;
    await shipper.sync();
    const pin = shipper.digestAtPosition.bind(shipper);
    shipper.digestAtPosition = async () => {
      shipper.digestAtPosition = pin; // once
      const pinned = await pin();
      expect(s.replica.pos()).toBeUndefined(); // the replica has not synced yet
      s.write(1); // a few frames: no checkpoint, the same WAL index
      await shipper.sync();
      release();
      return pinned;
    };
    const result = await s.replica.validate();
    expect(result.status).toBe('ok');
    expect(result.actual).toEqual(result.expected);
    const again = s.log.lines.filter((l) => l.msg.startsWith('validation pins again'));
    expect(again).toHaveLength(1);
    // The second pin is past that snapshot, in its index.
    const [generation, at] = String(again[0]!.fields!.snapshot).split('/');
    const snapshot: Pos = { generation: generation!, index: parseInt(at!.split(':')[0]!, 16), offset: Number(at!.split(':')[1]) };
    expect(snapshot.index).toBe(result.position.index);
    expect(comparePos(result.position, snapshot)).toBeGreaterThanOrEqual(0);
    expect(s.replica.validations).toEqual({ ok: 1, mismatch: 0, error: 0 });
  });

  it('reports a mismatch when a replica object holds other (well-formed) bytes', async () => {
    const s = await setup({ prefillRows: 60 });
    s.write(5);
    await s.r.sync();
    // What a validation must find: the live database is what the healthy replica restores to.
    const live = await restoredDigest(s.replicaDir, join(s.dir, 'healthy.db'));
    const [snap] = await collect(s.replica.client.snapshots(s.replica.pos()!.generation));
    // The generation's snapshot holds the prefilled rows. Flip a byte inside a few of their leaf pages
    // (rows are only appended, so no WAL frame replaces those pages on restore). The LZ4 frame is
    // re-encoded, so its checksums match and the database still opens: only those pages differ.
    await rewriteObject(s.replica.client.snapshotLocation(snap!.generation, snap!.index), (plain) => {
      expect(plain.length).toBeGreaterThan(12 * 4096);
      for (let page = 6; page < 12; page++) plain[page * 4096 + 2000] = plain[page * 4096 + 2000]! ^ 0xff;
    });
    const result = await s.replica.validate();
    expect(result.status).toBe('mismatch');
    // Both sides exactly: the live database, and what the damaged replica restores to (6 pages differ).
    expect(result.expected).toEqual(live);
    const damaged = await restoredDigest(s.replicaDir, join(s.dir, 'damaged.db'));
    expect(result.actual).toEqual(damaged);
    expect(damaged).toEqual({ ...live, sha256: expect.not.stringMatching(live.sha256) });
    expect(s.replica.validations).toEqual({ ok: 0, mismatch: 1, error: 0 });
    const line = s.log.lines.find((l) => l.msg.startsWith('validation mismatch'));
    expect(line?.level).toBe('error');
    expect(line?.fields?.replica).toBe('backup');
  });

  it('counts a damaged object as an error that names it', async () => {
    const s = await setup();
    s.write(30);
    await s.r.sync();
    const gen = s.replica.pos()!.generation;
    const walDir = join(s.replicaDir, 'generations', gen, 'wal');
    const seg = readdirSync(walDir).sort()[0]!;
    const bytes = await readFile(join(walDir, seg));
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0xff; // breaks the LZ4 content checksum
    writeFileSync(join(walDir, seg), bytes);
    await expect(s.replica.validate()).rejects.toThrow(seg.replace(/\.lz4$/, ''));
    expect(s.replica.validations).toEqual({ ok: 0, mismatch: 0, error: 1 });
  });

  it('runs on the validation-interval schedule and emits each result', async () => {
    const s = await setup({ validationIntervalMs: 150 });
    const seen: string[] = [];
    s.r.on('validation', (e) => seen.push(`${e.replica}:${e.status}`));
    s.write(10);
    await s.r.sync();
    for (let i = 0; i < 100 && seen.length < 2; i++) {
      s.write(2);
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(seen.slice(0, 2)).toEqual(['backup:ok', 'backup:ok']);
    expect(s.replica.validations.ok).toBeGreaterThanOrEqual(2);
    expect(s.replica.validations.mismatch + s.replica.validations.error).toBe(0);
  });
});
