/**
 * Local state is never more readable than the database: the meta directory, the `generation` file,
 * shadow WAL files (page images of the database), restore markers, validation's scratch directory and
 * every temp file there take the database file's mode (directories: execute added wherever read is
 * set) and, when we run as root (as these tests do), its owner and group.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../src/client/file-client.js';
import type { WalSegmentInfo } from '../../src/client/replica-client.js';
import { startReplication, type Replication } from '../../src/replication.js';
import { defaultMetaPath } from '../../src/meta/meta-dir.js';
import { runCli } from '../helpers/cli.js';
import { openSourceDb, textOf } from '../helpers/source-db.js';
import { closeAfterEach, tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-perms-');
const open = closeAfterEach((r: Replication) => r.close().catch(() => undefined));

const UID = 1234;
const GID = 5678;

interface Entry {
  path: string;
  dir: boolean;
  mode: number;
  uid: number;
  gid: number;
}

function tree(root: string): Entry[] {
  const out: Entry[] = [];
  const walk = (p: string) => {
    const st = statSync(p);
    out.push({ path: relative(root, p) || '.', dir: st.isDirectory(), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
    if (st.isDirectory()) for (const n of readdirSync(p)) walk(join(p, n));
  };
  walk(root);
  return out;
}

const octal = (m: number) => `0${m.toString(8)}`;

/** A real file client that records the validation scratch directory while a validation restore reads from it. */
class ObservingClient extends FileReplicaClient {
  seen: Entry[][] = [];
  watch: string | undefined;
  override async walSegmentReader(pos: WalSegmentInfo) {
    if (this.watch && existsSync(this.watch)) this.seen.push(tree(this.watch));
    return super.walSegmentReader(pos);
  }
}

function appWrite(dbPath: string, seq: number, rows: number): void {
  const db = openSourceDb(dbPath);
  try {
    const insert = db.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < rows; i++) insert.run(textOf(seq * 1000 + i, 1500), seq);
    })();
  } finally {
    db.close();
  }
}

describe('local state takes the database file’s permissions and owner', () => {
  for (const [dbMode, dirMode] of [
    [0o600, 0o700],
    [0o640, 0o750],
  ] as const) {
    it(`database ${octal(dbMode)} owned by ${UID}:${GID}: meta directory, generation file, shadow WAL files, validation scratch`, async () => {
      const dir = tmp();
      const dbPath = join(dir, 'app.db');
      appWrite(dbPath, 0, 1);
      chmodSync(dbPath, dbMode);
      chownSync(dbPath, UID, GID);
      const meta = defaultMetaPath(dbPath);
      mkdirSync(meta, { mode: 0o755 }); // left by an older version: tightened at start
      const client = new ObservingClient({ path: join(dir, 'replica') });
      const r = await startReplication({
        dbPath,
        replicas: [{ name: 'backup', client, syncIntervalMs: 10, retentionMs: 0 }],
        minCheckpointPageCount: 4,
      });
      open.push(r);
      for (let seq = 1; seq <= 6; seq++) {
        appWrite(dbPath, seq, 8);
        await r.sync();
      }
      client.watch = join(meta, 'validation');
      expect((await r.replicas[0]!.validate()).status).toBe('ok');
      await r.close();

      const entries = tree(meta);
      const shadows = entries.filter((e) => /\/wal\/[0-9a-f]{8}\.wal$/.test(e.path));
      expect(shadows.length).toBeGreaterThan(0);
      expect(entries.some((e) => e.path === 'generation')).toBe(true);
      expect(entries.filter((e) => e.path.endsWith('.tmp'))).toEqual([]);
      const wrong = entries.filter((e) => e.mode !== (e.dir ? dirMode : dbMode) || e.uid !== UID || e.gid !== GID);
      expect(wrong.map((e) => `${e.path} ${octal(e.mode)} ${e.uid}:${e.gid}`)).toEqual([]);

      // Validation restored into a scratch directory under the meta directory: its directories as the
      // meta directory's, nothing in it more readable than the database.
      expect(client.seen.length).toBeGreaterThan(0);
      for (const e of client.seen.flat()) {
        if (e.dir) expect(`${e.path} ${octal(e.mode)} ${e.uid}:${e.gid}`).toBe(`${e.path} ${octal(dirMode)} ${UID}:${GID}`);
        else expect(`${e.path} ${octal(e.mode & ~dbMode)}`).toBe(`${e.path} 00`);
      }
    });
  }

  it('a restore marker takes the restored database’s mode and owner', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'app.db');
    const replicaDir = join(dir, 'replica');
    appWrite(dbPath, 0, 3);
    const r = await startReplication({
      dbPath,
      replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 10, retentionMs: 0 }],
    });
    await r.sync();
    await r.close();

    const out = join(dir, 'restored', 'app.db');
    // Through a config with continue-after-restore: the restore that leaves a marker.
    const config = join(dir, 'restore.yml');
    writeFileSync(config, `dbs:\n  - path: ${out}\n    continue-after-restore: true\n    replicas:\n      - url: file://${replicaDir}\n`);
    const res = await runCli(['restore', '-config', config, out]);
    expect(res.code, res.stderr).toBe(0);
    const db = statSync(out);
    const entries = tree(defaultMetaPath(out));
    expect(entries.some((e) => e.path === 'restored-from.json')).toBe(true);
    const want = (e: Entry) => (e.dir ? (db.mode & 0o777) | ((db.mode & 0o444) >> 2) : db.mode & 0o777);
    const wrong = entries.filter((e) => e.mode !== want(e) || e.uid !== db.uid || e.gid !== db.gid);
    expect(wrong.map((e) => `${e.path} ${octal(e.mode)} ${e.uid}:${e.gid} (database ${octal(db.mode & 0o777)})`)).toEqual([]);
  });
});
