/**
 * The torture suite's short profile: one short round per backend (file, the S3 server, Azurite) with our
 * replicator, the application as processes that come and go, SIGKILLs of the replicator and of a
 * writer mid-transaction, store outages, big transactions, VACUUM and the application's own
 * checkpoints (torture/ has the harness; `npm run torture` runs it longer). Seeds are random and
 * printed; TORTURE_SEED=<n> replays one.
 *
 * The checkpoint bound is about behaviour, not speed: these rounds use min-checkpoint-page-count 100,
 * 200 or the default 1000, so a checkpoint is owed only after hundreds of new WAL pages, and outside the
 * big transactions (one commit each, so one checkpoint each) the application writes a few dozen pages a
 * second. More than 5 checkpoints inside one second therefore means checkpoints that were not owed (a
 * storm: each one a new WAL index and an upload per replica), whatever the machine's speed.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, litestreamBin } from '../../bench/lib/shared.js';
import { runRound } from '../../torture/harness.js';
import { resolveReplicator } from '../../torture/replicator.js';
import type { Backend } from '../../torture/store.js';
import { missingTools } from '../../torture/tools.js';

const root = join(import.meta.dirname, '..', '..');
const appJs = join(root, 'dist', 'torture', 'app.js');
const tools = { nodePath: process.execPath, oursBin: join(root, 'bin', 'stn-replicate.js'), litestreamBin: litestreamBin() };
const seed = Number(process.env.TORTURE_SEED ?? Math.floor(Math.random() * 2 ** 31) + 1);
const dir = mkdtempSync(join(tmpdir(), 'stn-torture-test-'));
let kept = false; // a failed round keeps its directory (database, ledger, replica, replicator logs)
afterAll(() => {
  if (!kept) rmSync(dir, { recursive: true, force: true });
});

const MAX_CHECKPOINTS_PER_SECOND = 5;

describe(`torture, short profile (seed ${seed})`, () => {
  it.each(['file', 's3', 'abs'] as Backend[])(
    'a %s replica: every commit restored by both tools, one lineage, no checkpoint storm',
    async (backend) => {
      expect(missingTools(), 'run scripts/install-test-tools.sh (as root) first').toEqual([]);
      expect(existsSync(appJs), 'the torture app is built into dist/ (npm run build)').toBe(true);
      const roundSeed = (seed + ['file', 's3', 'abs'].indexOf(backend)) >>> 0;
      const r = await runRound(
        { index: 0, seed: roundSeed, backend, seconds: 15 },
        {
          rootDir: dir,
          replicator: resolveReplicator('ours', tools),
          tools,
          appJs,
          servers: { s3Endpoint: inject('s3Endpoint'), absEndpoint: inject('absEndpoint') },
          env: cleanEnv({ LANG: 'C' }),
          asRoot: process.getuid?.() === 0,
          keep: false,
          plan: { calmCheckpoints: true },
          maxCheckpointsPerSecond: MAX_CHECKPOINTS_PER_SECOND,
        },
      );
      kept ||= r.dir !== undefined;
      const replay = `replay: TORTURE_SEED=${seed} npx vitest run test/torture, or npm run torture -- --replicator ours --seed ${roundSeed} --rounds 1 --backends ${backend} --seconds 15 --calm-checkpoints --max-checkpoints-per-second ${MAX_CHECKPOINTS_PER_SECOND} --keep; kept: ${r.dir ?? '-'}`;
      // The round did what it is for: faults happened, points in time were recorded.
      expect(r.pitr.length, replay).toBeGreaterThan(0);
      expect(r.appKills, replay).toBe(1);
      // The verdicts, each on its own so a failure names what broke.
      expect(r.latest.ours, replay).toEqual({ status: 'exact' });
      expect(r.latest.litestream, replay).toEqual({ status: 'exact' });
      expect(r.ledger.missing + r.ledger.extra + r.ledger.doomedSeen, replay).toBe(0);
      for (const p of r.pitr) {
        expect(p.ours, `${p.at}; ${replay}`).toEqual({ status: 'exact' });
        expect(['exact', 'nomatch'], `${p.at}: ${JSON.stringify(p.litestream)}; ${replay}`).toContain(p.litestream.status);
      }
      expect(
        r.generations.logged.filter((g) => !g.expected),
        replay,
      ).toEqual([]);
      expect(r.checkpoints.peakPerSecond, replay).toBeLessThanOrEqual(MAX_CHECKPOINTS_PER_SECOND);
      expect(r.failures, replay).toEqual([]);
    },
    150_000,
  );
});
