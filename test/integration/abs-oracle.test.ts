/**
 * The abs backend against Azurite and the real Litestream, both directions: what we replicate,
 * Litestream restores; what Litestream replicates, we restore and list identically.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { mixedWrite, waitForUpload } from '../helpers/fixtures.js';
import { LoggedProcess, litestreamBin, oracleEnv, parseTable, runLitestream } from '../helpers/oracle.js';
import { contentDigest, openSourceDb } from '../helpers/source-db.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer } from '../servers/abs-server.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-abs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(import.meta.dirname, '..', '..', 'bin', 'stn-replicate.js');

function absConfig(dbPath: string, container: string, prefix: string): string {
  const path = join(dir, `${prefix}.yml`);
  writeFileSync(
    path,
    [
      'logging:',
      '  level: debug',
      'dbs:',
      `  - path: ${dbPath}`,
      '    min-checkpoint-page-count: 5',
      '    monitor-interval: 50ms',
      '    replicas:',
      '      - type: abs',
      `        account-name: ${AZURITE_ACCOUNT}`,
      `        account-key: ${AZURITE_KEY}`,
      `        endpoint: ${inject('absEndpoint')}`,
      `        bucket: ${container}`,
      `        path: ${prefix}`,
      '        sync-interval: 10ms',
      '',
    ].join('\n'),
  );
  return path;
}

async function replicateSome(tool: 'ours' | 'litestream', dbPath: string, config: string, writes: number): Promise<string> {
  const db = openSourceDb(dbPath);
  const [cmd, args] = tool === 'ours' ? [process.execPath, [bin, 'replicate', '-config', config]] : [litestreamBin(), ['replicate', '-config', config]];
  const p = new LoggedProcess(config, spawn(cmd, args as string[], { env: oracleEnv(), stdio: ['ignore', 'pipe', 'pipe'] }));
  try {
    await p.waitForLog(/snapshot written/);
    for (let step = 0; step < writes; step++) {
      const after = p.lines.length;
      db.transaction(mixedWrite(db, step))();
      await waitForUpload(p, dbPath, after);
    }
  } finally {
    await p.stop(tool === 'ours' ? 'SIGTERM' : 'SIGINT');
  }
  const digest = contentDigest(db);
  db.close();
  return digest;
}

describe('abs replicas (azurite) with the real Litestream', () => {
  const container = `oracle-${randomBytes(4).toString('hex')}`;

  it('what we replicate, Litestream restores', async () => {
    await createContainer(inject('absEndpoint'), container);
    const dbPath = join(dir, 'ours.db');
    const config = absConfig(dbPath, container, 'ours');
    const digest = await replicateSome('ours', dbPath, config, 8);
    const out = join(dir, 'ours-by-litestream.db');
    const r = await runLitestream(['restore', '-config', config, '-o', out, dbPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(contentDigest(out)).toBe(digest);
  });

  it('what Litestream replicates, we restore and list identically', async () => {
    const dbPath = join(dir, 'theirs.db');
    const config = absConfig(dbPath, container, 'theirs');
    const digest = await replicateSome('litestream', dbPath, config, 8);
    const out = join(dir, 'theirs-by-ours.db');
    const r = await runCli(['restore', '-config', config, '-o', out, dbPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(contentDigest(out)).toBe(digest);
    for (const cmd of ['generations', 'snapshots', 'wal']) {
      const ours = parseTable((await runCli([cmd, '-config', config, dbPath])).stdout).map(({ lag: _l, ...rest }) => rest);
      const theirs = parseTable((await runLitestream([cmd, '-config', config, dbPath])).stdout).map(({ lag: _l, ...rest }) => rest);
      expect(ours).toEqual(theirs);
      expect(ours.length).toBeGreaterThan(0);
    }
  });
});
