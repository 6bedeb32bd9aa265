/**
 * What a user sees when a cloud store refuses: the CLI exits non-zero with a message that names the
 * backend, the bucket (container) and the object or prefix, and never prints a secret from the config.
 * The store answers 403 (a refusal no retry can fix) through a proxy in front of each test server.
 * And a read whose body stops arriving fails after the idle timeout instead of hanging a restore.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { AbsReplicaClient } from '../../src/client/abs-client.js';
import { GcsReplicaClient } from '../../src/client/gcs-client.js';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { runCli } from '../helpers/cli.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer } from '../servers/abs-server.js';
import { createBucket } from '../servers/s3-server.js';
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
          ? [
              `type: s3`,
              `bucket: refused-bkt`,
              `path: station`,
              `endpoint: ${proxy.endpoint}`,
              `region: us-east-1`,
              `access-key-id: AKIAEXAMPLE`,
              `secret-access-key: ${SECRET}`,
            ]
          : type === 'gcs'
            ? [`url: gcs://refused-bkt/station`]
            : [
                `type: abs`,
                `account-name: ${AZURITE_ACCOUNT}`,
                `account-key: ${SECRET}`,
                `endpoint: ${proxy.endpoint}${origin.pathname}`,
                `bucket: refused-bkt`,
                `path: station`,
              ];
      const config = join(dir, `${type}.yml`);
      writeFileSync(
        config,
        [
          'dbs:',
          `  - path: ${join(dir, 'station.db')}`,
          '    replicas:',
          ...replica.map((l, i) => `${i === 0 ? '      - ' : '        '}${l}`),
          '',
        ].join('\n'),
      );
      const r = await runCli(['restore', '-config', config, '-o', join(dir, `${type}-out.db`), join(dir, 'station.db')], {
        env: type === 'gcs' ? { STORAGE_EMULATOR_HOST: proxy.endpoint } : {},
      });
      expect(r.code, r.stderr).toBe(1);
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

describe('a body that stops arriving', () => {
  it.each(['s3', 'gcs', 'abs'] as const)('%s: the read fails after the idle timeout, naming the object', async (type) => {
    const origin = new URL(type === 's3' ? inject('s3Endpoint') : type === 'gcs' ? inject('gcsEndpoint') : inject('absEndpoint'));
    const bucket = `stallbody-${randomBytes(3).toString('hex')}`;
    if (type === 's3') await createBucket(origin.origin, bucket);
    if (type === 'abs') await createContainer(origin.href, bucket);
    const proxy = await startFaultProxy(origin.origin);
    const via = `${proxy.endpoint}${type === 'abs' ? origin.pathname : ''}`;
    const client =
      type === 's3'
        ? new S3ReplicaClient({
            bucket,
            path: 'db',
            endpoint: via,
            region: 'us-east-1',
            accessKeyId: 'k',
            secretAccessKey: 's',
            requestTimeoutMs: 500,
          })
        : type === 'gcs'
          ? new GcsReplicaClient({ bucket, path: 'db', endpoint: via, requestTimeoutMs: 500 })
          : new AbsReplicaClient({
              accountName: AZURITE_ACCOUNT,
              accountKey: AZURITE_KEY,
              bucket,
              path: 'db',
              endpoint: via,
              tryTimeoutMs: 500,
            });
    try {
      await client.writeSnapshot('0123456789abcdef', 1, [randomBytes(256 * 1024)]);
      proxy.mode = 'stallBody';
      const read = (async () => {
        const parts: Buffer[] = [];
        for await (const c of await client.snapshotReader('0123456789abcdef', 1)) parts.push(c as Buffer);
        return Buffer.concat(parts);
      })();
      await expect(read).rejects.toThrow(new RegExp(`${bucket}/db/generations/0123456789abcdef/snapshots/00000001`));
      expect(proxy.faults).toBeGreaterThan(0);
    } finally {
      await proxy.close();
    }
  });
});
