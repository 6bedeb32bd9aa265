/**
 * Takeover in both directions on the same database and replica: the second tool resumes the first one's
 * generation (no new generation when nothing changed in between), and both tools restore the result to
 * the source's content.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectBothRestore } from '../helpers/both-tools.js';
import { waitForUpload, mixedWrite } from '../helpers/fixtures.js';
import { LitestreamReplicator, startStnReplicator, type LoggedProcess } from '../helpers/oracle.js';
import { contentDigest, openSourceDb } from '../helpers/source-db.js';
import { tempDirs } from '../helpers/after-each.js';

const tmp = tempDirs('stn-takeover-a-');

async function writeSome(p: LoggedProcess, db: ReturnType<typeof openSourceDb>, dbPath: string, from: number, n: number): Promise<void> {
  for (let step = from; step < from + n; step++) {
    const after = p.lines.length;
    db.transaction(mixedWrite(db, step))();
    await waitForUpload(p, dbPath, after);
  }
}

const opts = (dir: string) => ({
  dbPath: join(dir, 'db.sqlite'),
  replicaDir: join(dir, 'replica'),
  syncInterval: '10ms',
  minCheckpointPageCount: 5,
  monitorInterval: '50ms',
});

describe('takeover', () => {
  it('Litestream replicates and stops; stn-replicate resumes the same generation', async () => {
    const dir = tmp();
    const o = opts(dir);
    const db = openSourceDb(o.dbPath);
    const ls = LitestreamReplicator.start(o);
    await ls.waitForLog(/msg="snapshot written"/);
    await writeSome(ls, db, o.dbPath, 0, 8);
    expect(await ls.stop('SIGINT')).toBe(0);
    const gens = readdirSync(join(o.replicaDir, 'generations'));
    expect(gens).toHaveLength(1);

    const ours = startStnReplicator(o);
    try {
      await ours.waitForLog(/msg=replicating/);
      expect(ours.lines.join('\n')).not.toMatch(/new generation/);
      await writeSome(ours, db, o.dbPath, 8, 8);
    } finally {
      expect(await ours.stop('SIGTERM')).toBe(0);
    }
    expect(readdirSync(join(o.replicaDir, 'generations'))).toEqual(gens);
    expect(readdirSync(join(o.replicaDir, 'generations', gens[0]!, 'snapshots'))).toHaveLength(1); // no second snapshot either
    await expectBothRestore(o.replicaDir, dir, contentDigest(db));
    db.close();
  });

  it('stn-replicate replicates and stops; Litestream resumes the same generation', async () => {
    const dir = tmp('stn-takeover-b-');
    const o = opts(dir);
    const db = openSourceDb(o.dbPath);
    const ours = startStnReplicator(o);
    await ours.waitForLog(/msg="snapshot written"/);
    await writeSome(ours, db, o.dbPath, 0, 8);
    expect(await ours.stop('SIGTERM')).toBe(0);
    const gens = readdirSync(join(o.replicaDir, 'generations'));
    expect(gens).toHaveLength(1);

    const ls = LitestreamReplicator.start(o);
    try {
      await ls.waitForLog(/msg="replicating to"|msg=initialized|level=INFO/);
      await writeSome(ls, db, o.dbPath, 8, 8);
      expect(ls.lines.join('\n')).not.toMatch(/new generation/);
    } finally {
      expect(await ls.stop('SIGINT')).toBe(0);
    }
    expect(readdirSync(join(o.replicaDir, 'generations'))).toEqual(gens);
    await expectBothRestore(o.replicaDir, dir, contentDigest(db));

    // And back again: stn-replicate takes over from Litestream's continuation.
    const again = startStnReplicator(o);
    try {
      await again.waitForLog(/msg=replicating/);
      await writeSome(again, db, o.dbPath, 16, 4);
    } finally {
      expect(await again.stop('SIGTERM')).toBe(0);
    }
    expect(readdirSync(join(o.replicaDir, 'generations'))).toEqual(gens);
    await expectBothRestore(o.replicaDir, dir, contentDigest(db));
    db.close();
  });
});
