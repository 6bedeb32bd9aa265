/**
 * What a user sees when a cloud store refuses: the CLI exits non-zero with a message that names the
 * backend, the bucket (container) and the object or prefix, and never prints a secret from the config.
 * The store answers 403 (a refusal no retry can fix) through a proxy in front of each test server.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { AZURITE_ACCOUNT } from '../servers/abs-server.js';
import { startFaultProxy } from '../servers/fault-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-cloud-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = 'TOPSECRETdGhpcyBpcyBub3QgYSByZWFsIGtleQ==';

describe('cloud errors name the store and never a secret', () => {
  it.each(['s3', 'gcs', 'abs'] as const)('%s: a refused listing', async (type) => {
    const origin = new URL(type === 's3' ? inject('s3Endpoint') : type === 'gcs' ? inject('gcsEndpoint') : inject('absEndpoint'));
    const proxy = await startFaultProxy(origin.origin);
    proxy.mode = 'error403';
    try {
      const replica =
        type === 's3'
          ? [`type: s3`, `bucket: refused-bkt`, `path: station`, `endpoint: ${proxy.endpoint}`, `region: us-east-1`, `access-key-id: AKIAEXAMPLE`, `secret-access-key: ${SECRET}`]
          : type === 'gcs'
            ? [`url: gcs://refused-bkt/station`]
            : [`type: abs`, `account-name: ${AZURITE_ACCOUNT}`, `account-key: ${SECRET}`, `endpoint: ${proxy.endpoint}${origin.pathname}`, `bucket: refused-bkt`, `path: station`];
      const config = join(dir, `${type}.yml`);
      writeFileSync(config, ['dbs:', `  - path: ${join(dir, 'station.db')}`, '    replicas:', ...replica.map((l, i) => `${i === 0 ? '      - ' : '        '}${l}`), ''].join('\n'));
      const r = await runCli(['restore', '-config', config, '-o', join(dir, `${type}-out.db`), join(dir, 'station.db')], {
        env: type === 'gcs' ? { STORAGE_EMULATOR_HOST: proxy.endpoint } : {},
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`[${type}]`);
      expect(r.stderr).toContain('refused-bkt');
      expect(r.stderr).toMatch(/station\/generations/);
      expect(r.stderr).toMatch(/HTTP 403/);
      expect(r.stdout + r.stderr).not.toContain(SECRET);
      expect(r.stdout + r.stderr).not.toContain(SECRET.slice(0, 12));
      expect(proxy.faults).toBeGreaterThan(0);
    } finally {
      await proxy.close();
    }
  });
});
