import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  expandEnv,
  findDb,
  loadConfig,
  parseConfig,
  parseDuration,
  parseReplicaUrl,
  replicaFromUrl,
  buildReplicaClient,
} from '../../../src/config/index.js';
import { isReplicateError } from '../../../src/errors.js';

const base = { expandEnv: true, env: {}, cwd: '/work/app', homeDir: '/home/me', sourcePath: '/etc/litestream.yml' };

function errorOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    if (isReplicateError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected an error');
}

describe('durations (Go time.ParseDuration)', () => {
  it.each([
    ['1s', 1000],
    ['1h30m', 5_400_000],
    ['24h', 86_400_000],
    ['500ms', 500],
    ['1.5h', 5_400_000],
    ['-1s', -1000],
    ['0', 0],
    ['10us', 0.01],
    ['1m0.5s', 60_500],
  ])('%s = %d ms', (text, ms) => expect(parseDuration(text)).toBeCloseTo(ms, 9));

  it.each(['1d', '', '5', 'abc', '1.s.'])('rejects %j', (text) => expect(() => parseDuration(text)).toThrow());
});

describe('environment expansion', () => {
  const env = { A: 'alpha', EMPTY: '', LITESTREAM_S3_BUCKET: 'bkt' };
  it.each([
    ['$A', 'alpha'],
    ['${A}', 'alpha'],
    ['x${A}y', 'xalphay'],
    ['$MISSING', ''],
    ['${MISSING}', ''],
    ['${MISSING:-us-east-1}', 'us-east-1'],
    ['${EMPTY:-fallback}', 'fallback'],
    ['${EMPTY-fallback}', ''],
    ['${MISSING-fallback}', 'fallback'],
    ['${A:-fallback}', 'alpha'],
    ['cost: 5$', 'cost: 5$'],
    ['$ x', '$ x'],
    ['a$$b', 'ab'],
    ['$1', ''],
  ])('%s -> %j', (input, out) => expect(expandEnv(input, env)).toBe(out));
});

describe('replica URLs', () => {
  it.each([
    ['file:///tmp/x', { type: 'file', path: '/tmp/x' }],
    ['file://tmp/y', { type: 'file', path: '/tmp/y' }],
    ['s3://b', { type: 's3', host: 'b', path: '.' }],
    ['s3://b/', { type: 's3', host: 'b', path: '' }],
    ['s3://b//a/../x', { type: 's3', host: 'b', path: 'x' }],
    ['s3://my.bucket.com:9000/x/y/', { type: 's3', host: 'my.bucket.com:9000', path: 'x/y' }],
    ['s3://bkt/db?endpoint=ignored', { type: 's3', host: 'bkt', path: 'db' }],
    ['gcs://bkt/station-db', { type: 'gcs', host: 'bkt', path: 'station-db' }],
    ['abs://acct@container/path/db', { type: 'abs', host: 'container', path: 'path/db', user: 'acct' }],
  ])('%s', (url, expected) => expect(parseReplicaUrl(url, '/cwd', '/home/me')).toMatchObject(expected));

  it('rejects unknown schemes from the command line', () => {
    expect(() => replicaFromUrl('ftp://host/x', '/', '/')).toThrow(/unknown replica type in URL: "ftp"/);
  });
});

describe('litestream.yml', () => {
  const yaml = `
access-key-id: TOPKEY
secret-access-key: TOPSECRET
logging:
  level: WARNING
  type: json
dbs:
  - path: ~/station.db
    min-checkpoint-page-count: 5
    checkpoint-interval: 30s
    replicas:
      - type: s3
        bucket: \${LITESTREAM_S3_BUCKET}
        path: station-db
        region: \${LITESTREAM_S3_REGION:-us-east-1}
        sync-interval: 10s
        retention: 24h
      - url: file:///backup/station-db
        name: local
      - path: relative/replica
  - path: /data/other.db
    replicas:
      - url: abs://acct@cont/p
        exit-on-error: true
`;
  it('parses keys, defaults and env defaults into typed values', () => {
    const c = parseConfig(yaml, { ...base, env: { LITESTREAM_S3_BUCKET: 'my-bucket' } });
    expect(c.logging).toEqual({ level: 'warn', type: 'json', stderr: false });
    expect(c.dbs).toHaveLength(2);
    const db = c.dbs[0]!;
    expect(db.path).toBe('/home/me/station.db');
    expect(db.minCheckpointPageCount).toBe(5);
    expect(db.checkpointIntervalMs).toBe(30_000);
    expect(db.replicas[0]).toMatchObject({
      type: 's3',
      bucket: 'my-bucket',
      path: 'station-db',
      region: 'us-east-1',
      syncIntervalMs: 10_000,
      retentionMs: 86_400_000,
      accessKeyId: 'TOPKEY',
      secretAccessKey: 'TOPSECRET',
    });
    expect(db.replicas[1]).toMatchObject({ type: 'file', name: 'local', path: '/backup/station-db' });
    expect(db.replicas[2]).toMatchObject({ type: 'file', path: '/work/app/relative/replica' });
    expect(c.dbs[1]!.replicas[0]).toMatchObject({ type: 'abs', bucket: 'cont', path: 'p', accountName: 'acct' });
    expect(c.warnings).toEqual([expect.stringMatching(/dbs\[1\]\.replicas\[0\]: unknown key "exit-on-error" ignored/)]);
  });

  it('keeps $VAR literally with -no-expand-env', () => {
    const c = parseConfig('dbs:\n  - path: /db\n    replicas:\n      - path: /r/$HOME\n', { ...base, expandEnv: false, env: { HOME: '/x' } });
    expect(c.dbs[0]!.replicas[0]!.path).toBe('/r/$HOME');
  });

  it.each([
    ['dbs:\n  - path: /db\n    replicas:\n      - type: ftp\n', 'UNKNOWN_REPLICA_TYPE', /unknown replica type in config: "ftp"/],
    ['dbs:\n  - path: /db\n    replicas:\n      - url: s3://b/p\n        path: x\n', 'CONFIG', /dbs\[0\]\.replicas\[0\]: cannot specify url & path for s3 replica/],
    ['dbs:\n  - path: /db\n    replicas:\n      - url: s3://b/p\n        bucket: x\n', 'CONFIG', /cannot specify url & bucket/],
    ['dbs:\n  - path: /db\n    replicas:\n      - path: s3://b/p\n', 'CONFIG', /replica path cannot be a url/],
    ['logging:\n  type: xml\n', 'CONFIG', /logging: type: want "text" or "json", got "xml"/],
    ['dbs:\n  - path: /db\n    replicas:\n      - path: /r\n        sync-interval: 5\n', 'CONFIG', /sync-interval: a bare number is ambiguous/],
    ['dbs:\n  - path: /db\n    replicas:\n      - path: /r\n        retention: 1d\n', 'CONFIG', /retention: unknown unit "d"/],
    ['dbs:\n  - path: /db\n    min-checkpoint-page-count: 0\n', 'CONFIG', /min-checkpoint-page-count: must be greater than 0/],
    ['dbs:\n  - replicas: []\n', 'CONFIG', /dbs\[0\]: path: database path required/],
    ['dbs: [unclosed\n', 'CONFIG', /invalid YAML/],
  ])('rejects %j', (text, code, re) => {
    const e = errorOf(() => parseConfig(text, base));
    expect(e.code).toBe(code);
    expect(e.message).toMatch(re);
    expect(e.message).not.toMatch(/TOPSECRET/);
  });

  it('finds databases by absolute path and names the miss', () => {
    const c = parseConfig(yaml, base);
    expect(findDb(c, '~/station.db', '/', '/home/me').path).toBe('/home/me/station.db');
    const e = errorOf(() => findDb(c, 'other.db', '/data/x', '/home/me'));
    expect(e.message).toMatch(/database not found in config: \/data\/x\/other\.db/);
  });

  it('loads from -config, $LITESTREAM_CONFIG, and says when the file is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stn-cfg-'));
    try {
      const file = join(dir, 'ls.yml');
      await writeFile(file, 'dbs:\n  - path: /db\n    replicas:\n      - path: /r\n');
      expect((await loadConfig({ path: file, expandEnv: true, env: {}, cwd: '/', homeDir: '/' })).dbs[0]!.path).toBe('/db');
      expect((await loadConfig({ expandEnv: true, env: { LITESTREAM_CONFIG: file }, cwd: '/', homeDir: '/' })).path).toBe(file);
      const missing = join(dir, 'nope.yml');
      await expect(loadConfig({ path: missing, expandEnv: true, env: {}, cwd: '/', homeDir: '/' })).rejects.toThrow(`config file not found: ${missing}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('builds file clients and says which types are not supported yet', () => {
    expect(buildReplicaClient({ type: 'file', path: '/r' }).type).toBe('file');
    expect(() => buildReplicaClient({ type: 'gcs', bucket: 'b' })).toThrow(/replica type "gcs" is not supported yet/);
  });
});
