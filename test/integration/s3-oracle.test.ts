/**
 * The s3 backend against a real S3 protocol server (fauxqs) and the real Litestream, both directions:
 * what we replicate, Litestream restores; what Litestream replicates, we restore and list identically;
 * and an independent S3 client (minio) reads what we wrote.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as Minio from 'minio';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { waitForUpload, mixedWrite } from '../helpers/fixtures.js';
import { LoggedProcess, litestreamBin, oracleEnv, parseTable, runLitestream } from '../helpers/oracle.js';
import { contentDigest, openSourceDb } from '../helpers/source-db.js';
import { createBucket } from '../servers/s3-server.js';
import { spawn } from 'node:child_process';

const dir = mkdtempSync(join(tmpdir(), 'stn-s3-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(import.meta.dirname, '..', '..', 'bin', 'stn-replicate.js');

function s3Config(dbPath: string, bucket: string, prefix: string): string {
  const endpoint = inject('s3Endpoint');
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
      '      - type: s3',
      `        bucket: ${bucket}`,
      `        path: ${prefix}`,
      `        endpoint: ${endpoint}`,
      '        region: us-east-1',
      '        force-path-style: true',
      '        access-key-id: test-key',
      '        secret-access-key: test-secret',
      '        sync-interval: 10ms',
      '',
    ].join('\n'),
  );
  return path;
}

function startReplicator(tool: 'ours' | 'litestream', config: string): LoggedProcess {
  const [cmd, args] = tool === 'ours' ? [process.execPath, [bin, 'replicate', '-config', config]] : [litestreamBin(), ['replicate', '-config', config]];
  const child = spawn(cmd, args as string[], { env: oracleEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  return new LoggedProcess(config, child);
}

async function replicateSome(tool: 'ours' | 'litestream', dbPath: string, config: string, writes: number) {
  const db = openSourceDb(dbPath);
  const p = startReplicator(tool, config);
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

describe('s3 replicas (fauxqs) with the real Litestream', () => {
  const bucket = `oracle-${randomBytes(4).toString('hex')}`;

  it('what we replicate to S3, Litestream restores; and so do we', async () => {
    await createBucket(inject('s3Endpoint'), bucket);
    const dbPath = join(dir, 'ours.db');
    const config = s3Config(dbPath, bucket, 'ours');
    const digest = await replicateSome('ours', dbPath, config, 10);
    const a = join(dir, 'ours-by-litestream.db');
    const r = await runLitestream(['restore', '-config', config, '-o', a, dbPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(contentDigest(a)).toBe(digest);
    const b = join(dir, 'ours-by-ours.db');
    const r2 = await runCli(['restore', '-config', config, '-o', b, dbPath]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(contentDigest(b)).toBe(digest);

    // An independent S3 client sees Litestream's layout and LZ4 frames.
    const url = new URL(inject('s3Endpoint'));
    const minio = new Minio.Client({ endPoint: url.hostname, port: Number(url.port), useSSL: false, accessKey: 'x', secretKey: 'y', region: 'us-east-1', pathStyle: true });
    const names: { name: string; size: number }[] = [];
    for await (const o of minio.listObjectsV2(bucket, 'ours/', true)) names.push({ name: (o as { name: string }).name, size: (o as { size: number }).size });
    expect(names.some((n) => /^ours\/generations\/[0-9a-f]{16}\/snapshots\/[0-9a-f]{8}\.snapshot\.lz4$/.test(n.name))).toBe(true);
    const segs = names.filter((n) => /^ours\/generations\/[0-9a-f]{16}\/wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/.test(n.name));
    expect(segs.length).toBeGreaterThan(3);
    const stream = await minio.getObject(bucket, segs[0]!.name);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const bytes = Buffer.concat(chunks);
    expect(bytes.length).toBe(segs[0]!.size);
    expect(bytes.subarray(0, 7).toString('hex')).toBe('04224d186470b9');
  });

  it('what Litestream replicates to S3, we restore and list identically', async () => {
    const dbPath = join(dir, 'theirs.db');
    const config = s3Config(dbPath, bucket, 'theirs');
    const digest = await replicateSome('litestream', dbPath, config, 10);
    const a = join(dir, 'theirs-by-ours.db');
    const r = await runCli(['restore', '-config', config, '-o', a, dbPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(contentDigest(a)).toBe(digest);
    for (const cmd of ['generations', 'snapshots', 'wal']) {
      const ours = parseTable((await runCli([cmd, '-config', config, dbPath])).stdout).map(({ lag: _l, ...rest }) => rest);
      const theirs = parseTable((await runLitestream([cmd, '-config', config, dbPath])).stdout).map(({ lag: _l, ...rest }) => rest);
      expect(ours).toEqual(theirs);
      expect(ours.length).toBeGreaterThan(0);
    }
  });
});
