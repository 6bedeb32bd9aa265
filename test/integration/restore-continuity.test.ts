/**
 * Restore → replicate continuity: after `restore` of a generation's latest state, `replicate` on the
 * restored database continues that generation (no new snapshot) when that is provably safe, and starts a
 * new generation, saying why, when it is not. Litestream's own restore of the replica is the oracle.
 */
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { restore } from '../../src/replica/restore.js';
import { startReplication } from '../../src/replication.js';
import { runCli } from '../helpers/cli.js';
import { mixedWrite, waitForUpload } from '../helpers/fixtures.js';
import { LitestreamReplicator, runLitestream, startStnReplicator, type LoggedProcess } from '../helpers/oracle.js';
import { contentDigest, openSourceDb } from '../helpers/source-db.js';
import { tempDirs } from '../helpers/after-each.js';
import { recordingLogger } from '../helpers/recording-logger.js';
import { publishRestartWithoutHeader } from '../helpers/wal-index.js';

const tempDir = tempDirs('stn-continuity-');

const replicatorOpts = (dbPath: string, replicaDir: string) => ({
  dbPath,
  replicaDir,
  syncInterval: '10ms',
  minCheckpointPageCount: 5,
  monitorInterval: '50ms',
  continueAfterRestore: true,
});

const markerPath = (dbPath: string) => join(dirname(dbPath), `.${basename(dbPath)}-litestream`, 'restored-from.json');

async function writeSome(p: LoggedProcess, db: Database.Database, dbPath: string, from: number, n: number): Promise<void> {
  for (let step = from; step < from + n; step++) {
    const after = p.lines.length;
    db.transaction(mixedWrite(db, step))();
    await waitForUpload(p, dbPath, after);
  }
}

/** Replicates a fresh source database with ours for a while; returns it (still open) and its path. */
async function replicatedSource(dir: string, replicaDir: string): Promise<{ db: Database.Database; path: string }> {
  const path = join(dir, 'source.db');
  const db = openSourceDb(path);
  const p = startStnReplicator(replicatorOpts(path, replicaDir));
  try {
    await p.waitForLog(/msg="snapshot written"/);
    await writeSome(p, db, path, 0, 10);
  } finally {
    expect(await p.stop('SIGTERM')).toBe(0);
  }
  return { db, path };
}

/**
 * Restores as an operator who continues replication does: through the config that names the database
 * with `continue-after-restore: true`, which is what makes a restore leave its marker.
 */
async function restoreWithOurs(replicaDir: string, out: string, extra: string[] = []): Promise<void> {
  const config = `${out}.restore.yml`;
  writeFileSync(config, `dbs:\n  - path: ${out}\n    continue-after-restore: true\n    replicas:\n      - url: file://${replicaDir}\n`);
  const r = await runCli(['restore', ...extra, '-config', config, out]);
  expect(r.code, r.stderr).toBe(0);
}

/** Our restore and Litestream's of the replica (latest state, or one generation) both give `expected`. */
async function bothRestore(dir: string, replicaDir: string, expected: string, generation?: string): Promise<void> {
  const g = generation ? ['-generation', generation] : [];
  const a = join(dir, `check-ours-${Date.now()}.db`);
  const b = join(dir, `check-theirs-${Date.now()}.db`);
  await restoreWithOurs(replicaDir, a, g);
  const r2 = await runLitestream(['restore', ...g, '-o', b, `file://${replicaDir}`]);
  expect(r2.code, r2.stderr).toBe(0);
  expect(contentDigest(a)).toBe(expected);
  expect(contentDigest(b)).toBe(expected);
}

/**
 * Replicates the restored database while the app writes, expecting a new generation for `reason` (and
 * no continuation); afterwards the marker is gone. Returns the replica's generations.
 */
async function replicateIntoNewGeneration(
  restored: string,
  replicaDir: string,
  app: Database.Database,
  reason: RegExp,
  opts: Partial<ReturnType<typeof replicatorOpts>> = {},
): Promise<string[]> {
  const p = startStnReplicator({ ...replicatorOpts(restored, replicaDir), ...opts });
  try {
    await p.waitForLog(new RegExp(`msg="new generation".*${reason.source}`));
    await writeSome(p, app, restored, 101, 4);
    expect(p.lines.join('\n')).not.toMatch(/continuing generation/);
  } finally {
    expect(await p.stop('SIGTERM')).toBe(0);
  }
  expect(existsSync(markerPath(restored))).toBe(false);
  return generations(replicaDir);
}

/** What the library logged at info and above, one `message {fields}` line each. */
const logText = (logger: ReturnType<typeof recordingLogger>) =>
  logger.lines
    .filter((l) => l.level !== 'debug')
    .map((l) => `${l.msg} ${JSON.stringify(l.fields)}`)
    .join('\n');

const generations = (replicaDir: string) => readdirSync(join(replicaDir, 'generations')).sort();
const snapshots = (replicaDir: string, g: string) => readdirSync(join(replicaDir, 'generations', g, 'snapshots'));

describe('restore → replicate continuity', () => {
  it('continues the restored generation: one generation, one snapshot, both restores give the final rows', async () => {
    const dir = tempDir('stn-rc-a-');
    const replicaDir = join(dir, 'replica');
    const source = await replicatedSource(dir, replicaDir);
    const [gen] = generations(replicaDir);
    source.db.close();

    const restored = join(dir, 'restored.db');
    await restoreWithOurs(replicaDir, restored);
    // The marker records the replica's end: a WAL index that was applied, not just the snapshot.
    const marker = JSON.parse(readFileSync(markerPath(restored), 'utf8')) as { generation: string; index: number; offset: number };
    expect(marker.generation).toBe(gen);
    expect(marker.offset).toBeGreaterThan(0);

    // The application writes before replication starts (kept open: closing would checkpoint), and after.
    const app = openSourceDb(restored);
    app.transaction(mixedWrite(app, 100))();
    const p = startStnReplicator(replicatorOpts(restored, replicaDir));
    try {
      await p.waitForLog(new RegExp(`continuing generation ${gen} after restore`));
      await writeSome(p, app, restored, 101, 8);
      expect(p.lines.join('\n')).not.toMatch(/new generation/);
    } finally {
      expect(await p.stop('SIGTERM')).toBe(0);
    }
    expect(existsSync(markerPath(restored))).toBe(false);
    expect(generations(replicaDir)).toEqual([gen]);
    expect(snapshots(replicaDir, gen!)).toHaveLength(1);
    await bothRestore(dir, replicaDir, contentDigest(app));

    // A restart goes on in the same generation too (the restored index still has no shadow file).
    const again = startStnReplicator(replicatorOpts(restored, replicaDir));
    try {
      await again.waitForLog(/msg=replicating/);
      await writeSome(again, app, restored, 200, 3);
      expect(again.lines.join('\n')).not.toMatch(/new generation/);
    } finally {
      expect(await again.stop('SIGTERM')).toBe(0);
    }
    expect(generations(replicaDir)).toEqual([gen]);
    await bothRestore(dir, replicaDir, contentDigest(app));

    // Litestream takes over the continued generation as any other (our extra file there is ignored).
    const ls = LitestreamReplicator.start(replicatorOpts(restored, replicaDir));
    try {
      await ls.waitForLog(/level=INFO/);
      await writeSome(ls, app, restored, 300, 3);
      expect(ls.lines.join('\n')).not.toMatch(/new generation/);
    } finally {
      await ls.stop('SIGINT');
    }
    expect(generations(replicaDir)).toEqual([gen]);
    await bothRestore(dir, replicaDir, contentDigest(app));
    app.close();
  });

  it('starts a new generation when a checkpoint changed the restored database, and says why', async () => {
    const dir = tempDir('stn-rc-b-');
    const replicaDir = join(dir, 'replica');
    const source = await replicatedSource(dir, replicaDir);
    const [gen] = generations(replicaDir);
    const sourceDigest = contentDigest(source.db);
    source.db.close();

    const restored = join(dir, 'restored.db');
    await restoreWithOurs(replicaDir, restored);
    const app = openSourceDb(restored);
    app.transaction(mixedWrite(app, 100))();
    app.pragma('wal_checkpoint(TRUNCATE)'); // the restored file itself changes: its writes leave the WAL

    const gens = await replicateIntoNewGeneration(restored, replicaDir, app, /database changed since the restore/);
    expect(gens).toHaveLength(2);
    expect(gens).toContain(gen);
    await bothRestore(dir, replicaDir, contentDigest(app));
    await bothRestore(dir, replicaDir, sourceDigest, gen); // the old generation is intact
    app.close();
  });

  it('starts a new generation when the replica moved on after the restore; nothing is lost', async () => {
    const dir = tempDir('stn-rc-c-');
    const replicaDir = join(dir, 'replica');
    const source = await replicatedSource(dir, replicaDir);
    const [gen] = generations(replicaDir);

    const restored = join(dir, 'restored.db');
    await restoreWithOurs(replicaDir, restored);

    // Meanwhile the original database goes on replicating into the same generation.
    const other = startStnReplicator(replicatorOpts(source.path, replicaDir));
    try {
      await other.waitForLog(/msg=replicating/);
      await writeSome(other, source.db, source.path, 50, 4);
      expect(other.lines.join('\n')).not.toMatch(/new generation/);
    } finally {
      expect(await other.stop('SIGTERM')).toBe(0);
    }
    const sourceDigest = contentDigest(source.db);
    source.db.close();

    const app = openSourceDb(restored);
    app.transaction(mixedWrite(app, 100))();
    const gens = await replicateIntoNewGeneration(restored, replicaDir, app, /moved on since the restore/);
    expect(gens).toHaveLength(2);
    await bothRestore(dir, replicaDir, contentDigest(app));
    await bothRestore(dir, replicaDir, sourceDigest, gen); // the other writer's history is all there
    app.close();
  });

  it('writes no marker for a restore to a point in time (-index, -timestamp)', async () => {
    const dir = tempDir('stn-rc-d-');
    const replicaDir = join(dir, 'replica');
    const source = await replicatedSource(dir, replicaDir);
    const sourceDigest = contentDigest(source.db);
    source.db.close();

    const [gen] = generations(replicaDir);
    const snapshotIndex = snapshots(replicaDir, gen!)[0]!.slice(0, 8);
    const byIndex = join(dir, 'by-index.db');
    await restoreWithOurs(replicaDir, byIndex, ['-index', snapshotIndex]);
    expect(existsSync(byIndex)).toBe(true);
    expect(existsSync(markerPath(byIndex))).toBe(false);

    const byTime = join(dir, 'by-time.db');
    await restoreWithOurs(replicaDir, byTime, ['-timestamp', new Date().toISOString()]);
    expect(existsSync(byTime)).toBe(true);
    expect(existsSync(markerPath(byTime))).toBe(false);

    // A marker that cannot be written costs the continuity, never the restore.
    const warnings: string[] = [];
    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, '');
    const unmarked = join(dir, 'unmarked.db');
    const result = await restore([{ name: 'file', client: new FileReplicaClient({ path: replicaDir }) }], {
      outputPath: unmarked,
      restoreMarker: true,
      metaPath: join(blocker, 'meta'),
      logger: { debug: () => undefined, info: () => undefined, warn: (m) => warnings.push(m), error: () => undefined },
    });
    expect(result.markerWritten).toBeUndefined();
    expect(contentDigest(unmarked)).toBe(sourceDigest);
    expect(warnings.join('\n')).toMatch(/cannot write the restore marker/);

    // And replicating such a database starts a new generation, saying why.
    const p = startStnReplicator(replicatorOpts(byTime, replicaDir));
    try {
      await p.waitForLog(/msg="new generation".*no restore marker/);
    } finally {
      expect(await p.stop('SIGTERM')).toBe(0);
    }
  });

  it('by default (continue-after-restore off, as Litestream) starts a new generation and says why', async () => {
    const dir = tempDir('stn-rc-off-');
    const replicaDir = join(dir, 'replica');
    const source = await replicatedSource(dir, replicaDir);
    const [gen] = generations(replicaDir);
    source.db.close();
    const restored = join(dir, 'restored.db');
    await restoreWithOurs(replicaDir, restored);
    expect(existsSync(markerPath(restored))).toBe(true);
    const app = openSourceDb(restored);
    app.transaction(mixedWrite(app, 100))();
    const gens = await replicateIntoNewGeneration(
      restored,
      replicaDir,
      app,
      new RegExp(`restore of generation ${gen} not continued: continue-after-restore is off`),
      {
        continueAfterRestore: undefined,
      },
    );
    expect(gens).toHaveLength(2);
    await bothRestore(dir, replicaDir, contentDigest(app));
    app.close();
  });

  it('a restore that replication will not continue (by URL, or the config says continue-after-restore off) leaves no marker, and clears a stale one', async () => {
    const dir = tempDir('stn-rc-nomark-');
    const replicaDir = join(dir, 'replica');
    const source = await replicatedSource(dir, replicaDir);
    source.db.close();
    const byUrl = join(dir, 'by-url.db');
    const r1 = await runCli(['restore', '-o', byUrl, `file://${replicaDir}`]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(existsSync(markerPath(byUrl))).toBe(false);
    expect(existsSync(dirname(markerPath(byUrl)))).toBe(false);

    // A marker left by an earlier restore to the same path must not vouch for this one.
    const byConfig = join(dir, 'by-config.db');
    await restoreWithOurs(replicaDir, byConfig);
    expect(existsSync(markerPath(byConfig))).toBe(true);
    rmSync(byConfig);
    const config = join(dir, 'off.yml');
    writeFileSync(config, `dbs:\n  - path: ${byConfig}\n    replicas:\n      - url: file://${replicaDir}\n`);
    const r2 = await runCli(['restore', '-config', config, byConfig]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(existsSync(markerPath(byConfig))).toBe(false);
    expect(contentDigest(byConfig)).toBe(contentDigest(byUrl));
  });

  it('does not continue when, while it starts, SQLite restarted the WAL over committed and checkpointed frames and no header was written', async () => {
    const dir = tempDir('stn-rc-f-');
    const replicaDir = join(dir, 'replica');
    const source = await replicatedSource(dir, replicaDir);
    source.db.close();
    const client = new FileReplicaClient({ path: replicaDir });
    const restored = join(dir, 'restored.db');
    await restore([{ name: 'file', client }], { outputPath: restored, restoreMarker: true });
    const app = openSourceDb(restored); // kept open: SQLite runs no recovery of the -shm
    app.pragma('wal_autocheckpoint = 0');
    app.transaction(mixedWrite(app, 100))();
    const logger = recordingLogger();
    let published = false;
    const r = await startReplication({
      dbPath: restored,
      replicas: [{ client, syncIntervalMs: 10 }],
      monitorIntervalMs: 0,
      continueAfterRestore: true,
      logger,
      // After the restore checks, before the decision: the application commits, checkpoints all of it
      // (the restored file changes), and a writer restarts the WAL and stops before writing its header.
      checkpointStepHook: (step) => {
        if (step !== 'start-prepared' || published) return;
        published = true;
        app.transaction(mixedWrite(app, 101))();
        app.pragma('wal_checkpoint(PASSIVE)');
        publishRestartWithoutHeader(`${restored}-shm`);
      },
    });
    try {
      expect(published).toBe(true);
      for (let step = 102; step < 105; step++) {
        app.transaction(mixedWrite(app, step))();
        await r.sync();
      }
    } finally {
      await r.close();
    }
    await bothRestore(dir, replicaDir, contentDigest(app));
    expect(logText(logger)).not.toMatch(/continuing generation/);
    expect(logText(logger)).toMatch(/new generation.*header was never written/);
    app.close();
  });

  it('works embedded too: the library restore leaves the marker and Replication continues', async () => {
    const dir = tempDir('stn-rc-e-');
    const replicaDir = join(dir, 'replica');
    const source = await replicatedSource(dir, replicaDir);
    const [gen] = generations(replicaDir);
    source.db.close();

    const client = new FileReplicaClient({ path: replicaDir });
    const restored = join(dir, 'restored.db');
    const result = await restore([{ name: 'file', client }], { outputPath: restored, restoreMarker: true });
    expect(result.markerWritten?.generation).toBe(gen);

    const logger = recordingLogger();
    const app = openSourceDb(restored);
    const r = await startReplication({
      dbPath: restored,
      replicas: [{ client, syncIntervalMs: 10 }],
      monitorIntervalMs: 0,
      continueAfterRestore: true,
      logger,
    });
    try {
      for (let step = 100; step < 106; step++) {
        app.transaction(mixedWrite(app, step))();
        await r.sync();
      }
      expect(r.shipper.pos()?.generation).toBe(gen);
    } finally {
      await r.close();
    }
    expect(logText(logger)).toMatch(new RegExp(`continuing generation ${gen} after restore`));
    expect(logText(logger)).not.toMatch(/new generation/);
    expect(generations(replicaDir)).toEqual([gen]);
    await bothRestore(dir, replicaDir, contentDigest(app));
    app.close();
  });
});
