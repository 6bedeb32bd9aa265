/**
 * SIGKILL at random moments under write load, then restart: every restore taken while the replicator is
 * dead is intact and holds every transaction committed before the last completed upload; after a clean
 * stop the replica restores to exactly the source. Checked with our restore and Litestream's.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { waitForUpload } from '../helpers/fixtures.js';
import { runLitestream, startStnReplicator, type LoggedProcess } from '../helpers/oracle.js';
import { contentDigest, openSourceDb, textOf } from '../helpers/source-db.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Rows 1..k of the restored table must be exactly the source's first k rows (a prefix, no gaps). */
function checkPrefix(restored: string, source: Database.Database): number {
  const db = new Database(restored, { readonly: true });
  try {
    expect(db.pragma('quick_check', { simple: true })).toBe('ok');
    const rows = db.prepare('SELECT id, v, n FROM t ORDER BY id').all() as { id: number; v: string; n: number }[];
    const k = rows.length;
    const expected = source.prepare('SELECT id, v, n FROM t ORDER BY id LIMIT ?').all(k);
    expect(rows).toEqual(expected);
    if (k > 0) expect(rows[k - 1]!.id).toBe(k);
    return k;
  } finally {
    db.close();
  }
}

let seed = 12345;
function random(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
}

describe('crash safety', () => {
  it('survives SIGKILL under write load, repeatedly', async () => {
    const o = {
      dbPath: join(dir, 'db.sqlite'),
      replicaDir: join(dir, 'replica'),
      syncInterval: '10ms',
      monitorInterval: '50ms',
      minCheckpointPageCount: 30,
    };
    const app = openSourceDb(o.dbPath);
    const insert = app.prepare('INSERT INTO t (v, n) VALUES (?, ?)');
    let written = 0;
    let writing = false;
    const writer = setInterval(() => {
      if (!writing) return;
      app.transaction(() => {
        for (let i = 0; i < 3; i++) insert.run(textOf(written, 500 + (written % 7) * 300), written++);
      })();
    }, 2);

    const reasons: string[] = [];
    let p: LoggedProcess = startStnReplicator(o);
    await p.waitForLog(/msg="snapshot written"/);
    for (let round = 0; round < 4; round++) {
      writing = true;
      await new Promise((r) => setTimeout(r, 100 + random() * 300));
      // A completed sync: stop writing, wait for everything committed to be uploaded.
      writing = false;
      const synced = written;
      await waitForUpload(p, o.dbPath, 0);
      writing = true;
      await new Promise((r) => setTimeout(r, 20 + random() * 250));
      // The app stops with the kill, not after it: a commit while the replicator is dead can restart a
      // WAL that its last checkpoint had fully backfilled (killed between that checkpoint and its own
      // restarting write), and a WAL restarted unseen rightly starts a new generation (the torture
      // suite covers that case). This test is about the crash alone.
      writing = false;
      p.stop('SIGKILL').catch(() => undefined);
      await p.exit;

      for (const tool of ['ours', 'litestream'] as const) {
        const out = join(dir, `r${round}-${tool}.db`);
        const r =
          tool === 'ours'
            ? await runCli(['restore', '-o', out, `file://${o.replicaDir}`])
            : await runLitestream(['restore', '-o', out, `file://${o.replicaDir}`]);
        expect(r.code, `${tool}: ${r.stderr}`).toBe(0);
        const k = checkPrefix(out, app);
        expect(k, `${tool} round ${round}: restored ${k} rows, ${synced} were uploaded before the kill`).toBeGreaterThanOrEqual(synced);
      }
      p = startStnReplicator(o);
      await p.waitForLog(/msg=replicating/);
      reasons.push(...p.lines.filter((l) => /new generation|clearing generation|CYCLE/.test(l)));
    }
    clearInterval(writer);
    expect(await p.stop('SIGTERM')).toBe(0);
    const final = join(dir, 'final.db');
    expect((await runCli(['restore', '-o', final, `file://${o.replicaDir}`])).code).toBe(0);
    expect(contentDigest(final)).toBe(contentDigest(app));
    // A crash loses no continuity: the shadow WAL on disk still matches the WAL, so one generation.
    expect(readdirSync(join(o.replicaDir, 'generations')), reasons.join('\n')).toHaveLength(1);
    app.close();
  }, 120_000);
});
