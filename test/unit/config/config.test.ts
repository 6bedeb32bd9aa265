import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configPath, findDb, loadConfig, parseConfig, replicaName, type Config } from '../../../src/config/index.js';
import { isReplicateError, type ReplicateError } from '../../../src/errors.js';
import { KEY, OTHER, secretPart } from '../../helpers/age-keys.js';

const SRC = '/etc/litestream.yml';
const base = { expandEnv: true, env: {}, cwd: '/work/app', homeDir: '/home/me', sourcePath: SRC };

function errorOf(fn: () => unknown): ReplicateError {
  try {
    fn();
  } catch (e) {
    if (isReplicateError(e)) return e;
    throw e;
  }
  throw new Error('expected an error');
}

const FULL = `
# A litestream.yml with most keys Litestream v0.3.13 knows.
access-key-id: TOPKEY
secret-access-key: TOPSECRET
addr: ":9090"
exec: node server.js
logging:
  level: WARNING
  type: json
  stderr: true
dbs:
  - path: ~/station.db
    meta-path: ./meta
    monitor-interval: 500ms
    checkpoint-interval: 30s
    min-checkpoint-page-count: 5
    max-checkpoint-page-count: 0
    replicas:
      - type: s3
        bucket: \${LITESTREAM_S3_BUCKET}
        path: station-db
        region: \${LITESTREAM_S3_REGION:-us-east-1}
        endpoint: http://minio:9000
        force-path-style: true
        skip-verify: false
        sync-interval: 10s
        snapshot-interval: 24h
        retention: 72h
        retention-check-interval: 1h30m
        validation-interval: 0
      - url: file:///backup/station-db
        name: local
        age:
          identities: [${KEY.identity}]
          recipients:
            - ${KEY.recipient}
      - path: relative/replica
        sync-interval: 1s
  - path: /data/other.db
    replicas:
      - url: abs://acct@cont/p
        account-key: KEY==
      - url: gcs://gbkt/a/b
        access-key-id: OWNKEY
      - url: sftp://backup:pw@nas.local:2222/srv/db
        key-path: ~/.ssh/id_ed25519
      - url: s3://mybkt.s3.us-west-000.backblazeb2.com/db
        name: b2
`;

describe('parseConfig: a full litestream.yml', () => {
  const c = parseConfig(FULL, { ...base, env: { LITESTREAM_S3_BUCKET: 'my-bucket' } });

  it('reads the top level and logging', () => {
    expect(c.path).toBe(SRC);
    expect(c.addr).toBe(':9090');
    expect(c.exec).toBe('node server.js');
    expect(c.accessKeyId).toBe('TOPKEY');
    expect(c.secretAccessKey).toBe('TOPSECRET');
    expect(c.logging).toEqual({ level: 'warn', type: 'json', stderr: true });
    expect(c.warnings).toEqual([]);
    expect(c.dbs.map((d) => d.path)).toEqual(['/home/me/station.db', '/data/other.db']);
  });

  it('reads database settings as typed values', () => {
    const { replicas, ...db } = c.dbs[0]!;
    expect(db).toEqual({
      path: '/home/me/station.db',
      metaPath: '/work/app/meta',
      monitorIntervalMs: 500,
      checkpointIntervalMs: 30_000,
      minCheckpointPageCount: 5,
      maxCheckpointPageCount: 0,
    });
    expect(replicas).toHaveLength(3);
    expect(c.dbs[1]).toEqual({ path: '/data/other.db', replicas: expect.any(Array) });
  });

  it('reads every replica type, with env defaults, URLs and top-level keys', () => {
    const [s3, local, rel] = c.dbs[0]!.replicas;
    expect(s3).toEqual({
      type: 's3',
      bucket: 'my-bucket',
      path: 'station-db',
      region: 'us-east-1',
      endpoint: 'http://minio:9000',
      forcePathStyle: true,
      skipVerify: false,
      syncIntervalMs: 10_000,
      snapshotIntervalMs: 86_400_000,
      retentionMs: 259_200_000,
      retentionCheckIntervalMs: 5_400_000,
      validationIntervalMs: 0,
      accessKeyId: 'TOPKEY',
      secretAccessKey: 'TOPSECRET',
    });
    expect(local).toEqual({
      type: 'file',
      name: 'local',
      url: 'file:///backup/station-db',
      path: '/backup/station-db',
      age: { identities: [KEY.identity], recipients: [KEY.recipient] },
      accessKeyId: 'TOPKEY',
      secretAccessKey: 'TOPSECRET',
    });
    expect(rel).toMatchObject({ type: 'file', path: '/work/app/relative/replica', syncIntervalMs: 1000 });
    expect(rel).not.toHaveProperty('name');
    expect(rel).not.toHaveProperty('retentionMs'); // unset stays undefined: defaults belong to the user of the value

    const [abs, gcs, sftp, b2] = c.dbs[1]!.replicas;
    expect(abs).toMatchObject({ type: 'abs', bucket: 'cont', path: 'p', accountName: 'acct', accountKey: 'KEY==' });
    expect(gcs).toMatchObject({ type: 'gcs', bucket: 'gbkt', path: 'a/b', accessKeyId: 'OWNKEY', secretAccessKey: 'TOPSECRET' });
    expect(sftp).toMatchObject({
      type: 'sftp',
      host: 'nas.local:2222',
      user: 'backup',
      password: 'pw',
      path: '/srv/db',
      keyPath: '~/.ssh/id_ed25519',
    });
    expect(b2).toMatchObject({
      type: 's3',
      name: 'b2',
      bucket: 'mybkt',
      region: 'us-west-000',
      endpoint: 'https://s3.us-west-000.backblazeb2.com',
      forcePathStyle: true,
      path: 'db',
    });
    expect(c.dbs[1]!.replicas.map(replicaName)).toEqual(['abs', 'gcs', 'sftp', 'b2']);
  });
});

describe('parseConfig: details', () => {
  const one = (replica: string, extra = '') =>
    `${extra}dbs:\n  - path: /db\n    replicas:\n      - ${replica.replace(/\n/g, '\n        ')}\n`;

  it('keeps $VAR literally with -no-expand-env', () => {
    const c = parseConfig(one('path: /r/$HOME/${X:-y}'), { ...base, expandEnv: false, env: { HOME: '/x' } });
    expect(c.dbs[0]!.replicas[0]!.path).toBe('/r/$HOME/${X:-y}');
    const expanded = parseConfig(one('path: /r/$HOME/${X:-y}'), { ...base, env: { HOME: '/x' } });
    expect(expanded.dbs[0]!.replicas[0]!.path).toBe('/r/x/y');
  });

  it('reads values as Litestream (yaml.v2 into Go types) does', () => {
    const c = parseConfig(
      one('url: s3://bkt/db\nname: 0777\npassword: 0777\nregion: 1e3\nforce-path-style: yes\nskip-verify: off') +
        '    min-checkpoint-page-count: 0x10\n    max-checkpoint-page-count: 017\n',
      base,
    );
    expect(c.dbs[0]).toMatchObject({ minCheckpointPageCount: 16, maxCheckpointPageCount: 15 });
    expect(c.dbs[0]!.replicas[0]).toMatchObject({ name: '0777', password: '0777', region: '1e3', forcePathStyle: true, skipVerify: false });
    expect(parseConfig(one('path: "0777"'), base).dbs[0]!.replicas[0]!.path).toBe('/work/app/0777');
  });

  it('reads max-shadow-wal-size as bytes, with decimal and binary units', () => {
    const size = (v: string) => parseConfig(`dbs:\n  - path: /db\n    max-shadow-wal-size: ${v}\n`, base).dbs[0]!.maxShadowWalBytes;
    expect(size('1048576')).toBe(1048576);
    expect(size('0')).toBe(0);
    expect(size('500MB')).toBe(500_000_000);
    expect(size('2GiB')).toBe(2 * 1024 ** 3);
    expect(size('1.5 kib')).toBe(1536);
  });

  it('reads health-max-lag (ours) as a positive duration; unset is undefined', () => {
    expect(parseConfig('health-max-lag: 30s\ndbs: []\n', base).healthMaxLagMs).toBe(30_000);
    expect(parseConfig('dbs: []\n', base).healthMaxLagMs).toBeUndefined();
    expect(parseConfig('health-max-lag: 30s\ndbs: []\n', base).warnings).toEqual([]);
    expect(errorOf(() => parseConfig('health-max-lag: 0s\ndbs: []\n', base)).message).toMatch(/health-max-lag must be a positive duration/);
  });

  it('supports anchors and merge keys', () => {
    const text = `common: &common\n  sync-interval: 10s\n  retention: 1h\ndbs:\n  - path: /db\n    replicas:\n      - <<: *common\n        path: /r\n`;
    const c = parseConfig(text, base);
    expect(c.dbs[0]!.replicas[0]).toMatchObject({ path: '/r', syncIntervalMs: 10_000, retentionMs: 3_600_000 });
    expect(c.warnings).toEqual([`config ${SRC}: unknown key "common" ignored`]);
  });

  it('treats empty and null values as unset, and an empty file as no databases', () => {
    const c = parseConfig(one('path: /r\nname:\nsync-interval: ~\nregion: ""'), base);
    expect(c.dbs[0]!.replicas[0]).toEqual({ type: 'file', path: '/r' });
    expect(parseConfig('', base)).toEqual({ path: SRC, dbs: [], logging: { level: 'info', type: 'text', stderr: false }, warnings: [] });
    expect(parseConfig('# only a comment\n', base).dbs).toEqual([]);
  });

  it('resolves the type: URL scheme, else type, else file', () => {
    expect(parseConfig(one('url: gcs://b/p'), base).dbs[0]!.replicas[0]!.type).toBe('gcs');
    expect(parseConfig(one('type: gcs\nbucket: b'), base).dbs[0]!.replicas[0]!.type).toBe('gcs');
    expect(parseConfig(one('path: /r'), base).dbs[0]!.replicas[0]!.type).toBe('file');
    const c = parseConfig(one('type: s3\nurl: file:///r'), base);
    expect(c.dbs[0]!.replicas[0]).toMatchObject({ type: 'file', path: '/r' });
    expect(c.warnings).toEqual([`config ${SRC}: dbs[0].replicas[0]: type: "s3" ignored, the url makes this a file replica`]);
  });

  it('fills in credentials from the top level only where a replica has none', () => {
    const c = parseConfig(one('url: s3://b/p\nsecret-access-key: OWN', 'access-key-id: TOP\nsecret-access-key: TOPS\n'), base);
    expect(c.dbs[0]!.replicas[0]).toMatchObject({ accessKeyId: 'TOP', secretAccessKey: 'OWN' });
  });

  it('keeps an explicit force-path-style unless the URL host asks for path style (as Litestream)', () => {
    const r = (s: string) => parseConfig(one(s), base).dbs[0]!.replicas[0]!;
    expect(r('url: s3://bkt.localhost:9000/db\nforce-path-style: false')).toMatchObject({
      forcePathStyle: true,
      endpoint: 'http://localhost:9000',
    });
    expect(r('url: s3://bkt/db\nforce-path-style: false').forcePathStyle).toBe(false);
    expect(r('url: s3://bkt/db')).not.toHaveProperty('forcePathStyle');
    expect(r('url: s3://bkt.localhost/db\nregion: eu-1\nendpoint: http://x')).toMatchObject({ region: 'eu-1', endpoint: 'http://x' });
  });

  it('warns about unknown keys (Litestream ignores them silently) and suggests the kebab-case key', () => {
    const c = parseConfig(
      one('path: /r\nexit-on-error: true\nsyncInterval: 1s\nsync_interval: 1s', 'loging:\n  level: debug\nlogging:\n  level: verbose\n'),
      base,
    );
    expect(c.logging.level).toBe('info');
    expect(c.warnings).toEqual([
      `config ${SRC}: unknown key "loging" ignored`,
      `config ${SRC}: dbs[0].replicas[0]: unknown key "exit-on-error" ignored`,
      `config ${SRC}: dbs[0].replicas[0]: unknown key "syncInterval" ignored (did you mean "sync-interval"?)`,
      `config ${SRC}: dbs[0].replicas[0]: unknown key "sync_interval" ignored (did you mean "sync-interval"?)`,
      `config ${SRC}: logging: level: unknown level "verbose", using info`,
    ]);
  });

  it("reads sftp's host key settings (ours), and warns when the host key check is turned off", () => {
    const r = (s: string) => parseConfig(one(s), base);
    const keyed = r('type: sftp\nhost: h:2222\nuser: u\nhost-key: ssh-ed25519 AAAAC3Nza host\nknown-hosts-path: ~/kh');
    expect(keyed.dbs[0]!.replicas[0]).toMatchObject({ hostKey: 'ssh-ed25519 AAAAC3Nza host', knownHostsPath: '~/kh' });
    expect(keyed.warnings).toEqual([]);
    const insecure = r('url: sftp://u@h/p\ninsecure-ignore-host-key: true');
    expect(insecure.dbs[0]!.replicas[0]).toMatchObject({ insecureIgnoreHostKey: true });
    expect(insecure.warnings).toEqual([
      `config ${SRC}: dbs[0].replicas[0]: insecure-ignore-host-key: the sftp server's host key is not verified, so anyone on the network path can pose as the server and read or change the replica; use it for test setups only (set host-key or known-hosts-path instead)`,
    ]);
  });

  it('warns about a database listed twice and replicas sharing a name', () => {
    const c = parseConfig('dbs:\n  - path: /db\n    replicas:\n      - path: /a\n      - path: /b\n  - path: /x/../db\n', base);
    expect(c.warnings).toEqual([
      `config ${SRC}: dbs[0].replicas[1]: replica name "file" is used twice (also replicas[0]); give each a name`,
      `config ${SRC}: dbs[1]: database /db is listed twice (also dbs[0])`,
    ]);
  });

  it.each([
    ['debug', 'debug'],
    ['INFO', 'info'],
    ['Warn', 'warn'],
    ['warning', 'warn'],
    ['ERROR', 'error'],
    ['', 'info'],
  ])('logging.level %j -> %s', (level, out) => {
    expect(parseConfig(`logging:\n  level: "${level}"\n`, base).logging.level).toBe(out);
  });
});

describe('parseConfig: errors name the file and the place', () => {
  const db = (replica: string) =>
    `dbs:\n  - path: /db\n    replicas:\n      - path: /ok\n      - ${replica.replace(/\n/g, '\n        ')}\n`;
  const P = `config ${SRC}: dbs[0].replicas[1]`;
  it.each([
    [db('type: ftp'), 'UNKNOWN_REPLICA_TYPE', `${P}: unknown replica type in config: "ftp"`],
    [db('url: ftp://host/x'), 'UNKNOWN_REPLICA_TYPE', `${P}: unknown replica type in config: "ftp"`],
    [db('url: s3://b/p\npath: x'), 'CONFIG', `${P}: cannot specify url & path for s3 replica`],
    [db('url: file:///x\npath: /y'), 'CONFIG', `${P}: cannot specify url & path for file replica`],
    [db('url: s3://b/p\nbucket: x'), 'CONFIG', `${P}: cannot specify url & bucket for s3 replica`],
    [db('url: abs://c/p\nbucket: x'), 'CONFIG', `${P}: cannot specify url & bucket for abs replica`],
    [db('url: sftp://u@h/p\nhost: x'), 'CONFIG', `${P}: cannot specify url & host for sftp replica`],
    [db('path: sftp://u:hunter2@h/p'), 'CONFIG', `${P}: path: replica path cannot be a url, please use the "url" field instead`],
    [db('type: file'), 'CONFIG', `${P}: file replica path required`],
    [db('type: s3\npath: p'), 'CONFIG', `${P}: bucket required for s3 replica`],
    [db('url: s3://localhost:9000/db'), 'CONFIG', `${P}: bucket required for s3 replica`],
    [db('type: sftp\nhost: h'), 'CONFIG', `${P}: user required for sftp replica`],
    [db('type: sftp\nuser: u'), 'CONFIG', `${P}: host required for sftp replica`],
    [db('url: s3://b:port/x'), 'CONFIG', `${P}: invalid replica URL s3://b:port/x: invalid port ":port" after host`],
    [db('url: /tmp/x'), 'CONFIG', `${P}: invalid replica URL /tmp/x: replica url scheme required`],
    [
      db('path: /r\nsync-interval: 5'),
      'CONFIG',
      `${P}: sync-interval: a bare number is ambiguous; write a duration with a unit such as "5s"`,
    ],
    [
      db('path: /r\nretention: 1d'),
      'CONFIG',
      `${P}: retention: unknown unit "d" in duration "1d" (want e.g. "1s", "1h30m", "500ms"; units ns us ms s m h)`,
    ],
    [
      db('path: /r\nretention: "5"'),
      'CONFIG',
      `${P}: retention: missing unit in duration "5" (want e.g. "1s", "1h30m", "500ms"; units ns us ms s m h)`,
    ],
    [db('path: /r\nskip-verify: maybe'), 'CONFIG', `${P}: skip-verify: want true or false, got "maybe"`],
    [db('path: /r\nlease-ttl: 100ms'), 'CONFIG', `${P}: lease-ttl: must be at least 500ms`],
    [db('path: /r\nlease: sometimes'), 'CONFIG', `${P}: lease: want true or false, got "sometimes"`],
    [db('path: [a, b]'), 'CONFIG', `${P}: path: want a string, got a list`],
    [db('path: /r\nage: [x]'), 'CONFIG', `${P}.age: want a mapping, got a list`],
    ['logging:\n  type: xml\n', 'CONFIG', `config ${SRC}: logging: type: want "text" or "json", got "xml"`],
    [
      'dbs:\n  - path: /db\n    min-checkpoint-page-count: 0\n',
      'CONFIG',
      `config ${SRC}: dbs[0]: min-checkpoint-page-count: must be greater than 0 (minimum checkpoint page count required)`,
    ],
    [
      'dbs:\n  - path: /db\n    max-checkpoint-page-count: 1.5\n',
      'CONFIG',
      `config ${SRC}: dbs[0]: max-checkpoint-page-count: want a whole number, got "1.5"`,
    ],
    [
      'dbs:\n  - path: /db\n    max-shadow-wal-size: lots\n',
      'CONFIG',
      `config ${SRC}: dbs[0]: max-shadow-wal-size: want a size such as 1GiB, 500MB or 1048576 (bytes), got "lots"`,
    ],
    [
      'dbs:\n  - path: /db\n    monitor-interval: 1\n',
      'CONFIG',
      `config ${SRC}: dbs[0]: monitor-interval: a bare number is ambiguous; write a duration with a unit such as "5s"`,
    ],
    ['dbs:\n  - replicas: []\n', 'CONFIG', `config ${SRC}: dbs[0]: path: database path required`],
    ['dbs:\n  path: /db\n', 'CONFIG', `config ${SRC}: dbs: want a list, got a mapping`],
    ['just text\n', 'CONFIG', `config ${SRC}: want a mapping, got a plain value`],
  ])('%j', (text, code, message) => {
    const e = errorOf(() => parseConfig(text, base));
    expect({ code: e.code, message: e.message }).toEqual({ code, message });
  });

  it('names the line and column of YAML syntax errors', () => {
    const e = errorOf(() => parseConfig('dbs:\n  - path: /db\n    replicas: [unclosed\n', base));
    expect(e.code).toBe('CONFIG');
    expect(e.message).toMatch(/^config \/etc\/litestream\.yml: invalid YAML at line 4, column 1: \S/);
  });

  it('never puts secrets in messages, not even from YAML syntax errors', () => {
    const text = 'secret-access-key: hunter2: oops\ndbs: []\n';
    const e = errorOf(() => parseConfig(text, base));
    expect(e.message).toMatch(/^config \/etc\/litestream\.yml: invalid YAML at line 1, column \d+: /);
    expect(e.message).not.toContain('hunter2');
    const dup = errorOf(() => parseConfig('password: a\npassword: hunter2\n', base));
    expect(dup.message).toMatch(/invalid YAML at line 2, column 1: Map keys must be unique/);
    expect(dup.message).not.toContain('hunter2');
    const url = errorOf(() => parseConfig('dbs:\n  - path: /db\n    replicas:\n      - url: sftp://u:hunter2@h:bad/p\n', base));
    expect(url.message).toContain('sftp://u:xxxxx@h:bad/p');
    expect(url.message).not.toContain('hunter2');
  });
});

describe('loadConfig, configPath, findDb', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stn-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const io = () => ({ expandEnv: true, env: {}, cwd: dir, homeDir: join(dir, 'home') });

  it('resolves the path: -config, else $LITESTREAM_CONFIG, else /etc/litestream.yml', () => {
    expect(configPath({ path: 'a.yml', env: { LITESTREAM_CONFIG: '/b.yml' }, cwd: '/w', homeDir: '/h' })).toBe('/w/a.yml');
    expect(configPath({ env: { LITESTREAM_CONFIG: '~/b.yml' }, cwd: '/w', homeDir: '/h' })).toBe('/h/b.yml');
    expect(configPath({ path: '', env: { LITESTREAM_CONFIG: '' }, cwd: '/w', homeDir: '/h' })).toBe('/etc/litestream.yml');
    expect(configPath({ env: {}, cwd: '/w', homeDir: '/h' })).toBe('/etc/litestream.yml');
  });

  it('loads a file, expanding env and resolving paths against cwd', async () => {
    const file = join(dir, 'ls.yml');
    await writeFile(file, 'dbs:\n  - path: app.db\n    replicas:\n      - path: ${REPLICA:-backup}\n');
    const c = await loadConfig({ ...io(), path: 'ls.yml' });
    expect(c.path).toBe(file);
    expect(c.dbs[0]).toEqual({ path: join(dir, 'app.db'), replicas: [{ type: 'file', path: join(dir, 'backup') }] });
    const viaEnv = await loadConfig({ ...io(), env: { LITESTREAM_CONFIG: file, REPLICA: '/elsewhere' } });
    expect(viaEnv.dbs[0]!.replicas[0]!.path).toBe('/elsewhere');
  });

  it('says when the file is missing or unreadable', async () => {
    const missing = join(dir, 'nope.yml');
    const err = await loadConfig({ ...io(), path: missing }).catch((e: unknown) => e);
    expect(isReplicateError(err, 'CONFIG')).toBe(true);
    expect((err as ReplicateError).message).toBe(`config file not found: ${missing}`);
    expect((err as ReplicateError).details).toMatchObject({ path: missing, reason: 'not-found' });
    const viaEnv = await loadConfig({ ...io(), env: { LITESTREAM_CONFIG: missing } }).catch((e: unknown) => e);
    expect((viaEnv as Error).message).toBe(`config file not found: ${missing}`);
    await mkdir(join(dir, 'a-dir.yml'));
    const notFile = await loadConfig({ ...io(), path: 'a-dir.yml' }).catch((e: unknown) => e);
    expect((notFile as Error).message).toMatch(new RegExp(`^reading config ${join(dir, 'a-dir.yml')}: EISDIR`));
  });

  it('names the file in parse errors', async () => {
    const file = join(dir, 'bad.yml');
    await writeFile(file, 'logging:\n  type: yaml\n');
    await expect(loadConfig({ ...io(), path: file })).rejects.toThrow(`config ${file}: logging: type: want "text" or "json", got "yaml"`);
  });

  it('finds databases by absolute path, exactly', () => {
    const c: Config = parseConfig('dbs:\n  - path: ~/station.db\n  - path: /data/b.db\n', base);
    expect(findDb(c, '~/station.db', '/', '/home/me').path).toBe('/home/me/station.db');
    expect(findDb(c, '../b.db', '/data/x', '/home/me').path).toBe('/data/b.db');
    expect(findDb(c, '/data//b.db', '/', '/home/me').path).toBe('/data/b.db');
    const e = errorOf(() => findDb(c, 'b.db', '/data/x', '/home/me'));
    expect({ code: e.code, message: e.message }).toEqual({ code: 'NOT_FOUND', message: 'database not found in config: /data/x/b.db' });
  });
});

describe('parseConfig: the replica lease (ours)', () => {
  it('reads lease and lease-ttl per replica; unset stays unset', () => {
    const c = parseConfig(
      'dbs:\n  - path: /db\n    replicas:\n      - name: a\n        path: /a\n        lease-ttl: 2s\n      - name: b\n        path: /b\n        lease: false\n      - name: c\n        path: /c\n',
      base,
    );
    const [a, b, cc] = c.dbs[0]!.replicas;
    expect([a!.lease, a!.leaseTtlMs]).toEqual([undefined, 2000]);
    expect([b!.lease, b!.leaseTtlMs]).toEqual([false, undefined]);
    expect([cc!.lease, cc!.leaseTtlMs]).toEqual([undefined, undefined]);
    expect(c.warnings).toEqual([]);
  });
});

describe('parseConfig and loadConfig: age keys', () => {
  const withAge = (age: string) =>
    `dbs:\n  - path: /db\n    replicas:\n      - path: /r\n        age:\n${age.replace(/^/gm, '          ')}\n`;
  const P = `config ${SRC}: dbs[0].replicas[0].age`;
  // Its last character changed within the bech32 alphabet: well formed, wrong checksum.
  const flipped = (key: string) => {
    const [a, b] = key.startsWith('age1') ? ['q', 'p'] : ['Q', 'P'];
    return key.slice(0, -1) + (key.endsWith(a) ? b : a);
  };

  it('reads each entry as a key file: several keys per entry, # comments and blank lines skipped', () => {
    const c = parseConfig(
      withAge(`identities:\n  - |\n    # the replica's key\n    ${KEY.identity}\n\n    ${OTHER.identity}\nrecipients: [${KEY.recipient}]`),
      base,
    );
    expect(c.dbs[0]!.replicas[0]!.age).toEqual({
      identities: [`# the replica's key\n${KEY.identity}\n\n${OTHER.identity}\n`],
      recipients: [KEY.recipient],
    });
    // No keys at all is no encryption.
    expect(parseConfig(withAge('identities: []'), base).dbs[0]!.replicas[0]!.age).toBeUndefined();
  });

  it.each([
    [
      'identities: [not-a-key]',
      `${P}.identities[0]: not an age X25519 secret key (want AGE-SECRET-KEY-1 and 58 more characters, as age-keygen writes it)`,
    ],
    [
      `identities: [${KEY.recipient}]`,
      `${P}.identities[0]: this is a recipient (a public key, age1…): it belongs under age.recipients; identities are secret keys (AGE-SECRET-KEY-1…)`,
    ],
    [
      `recipients: [${KEY.identity}]`,
      `${P}.recipients[0]: this is a secret key (an identity): it belongs under age.identities; recipients are public keys (age1…, \`age-keygen -y\` prints them)`,
    ],
    [`identities: [${KEY.identity.toLowerCase()}]`, `${P}.identities[0]: an age secret key is written in upper case (AGE-SECRET-KEY-1…)`],
    [`identities: ["${KEY.identity} "]`, `${P}.identities[0]: it has spaces or tabs around it (Litestream does not trim keys either)`],
    [
      `identities: [${KEY.identity.slice(0, -2)}]`,
      `${P}.identities[0]: not an age X25519 secret key (want AGE-SECRET-KEY-1 and 58 more characters, as age-keygen writes it)`,
    ],
    [
      `recipients: [age1pq1${'q'.repeat(60)}]`,
      `${P}.recipients[0]: post-quantum and tag keys are not supported: Litestream v0.3.13 reads X25519 age keys only (age-keygen without -pq)`,
    ],
    [
      'recipients: ["ssh-ed25519 AAAAC3Nz"]',
      `${P}.recipients[0]: SSH keys are not supported: Litestream v0.3.13 reads X25519 age keys only`,
    ],
    [`identities:\n  - "# only a comment"`, `${P}.identities[0]: holds no secret key (only blank or # lines)`],
    [
      `identities:\n  - |\n    ${KEY.identity}\n    # next\n    ${KEY.recipient}`,
      `${P}.identities[0] line 3: this is a recipient (a public key, age1…): it belongs under age.recipients; identities are secret keys (AGE-SECRET-KEY-1…)`,
    ],
  ])('%j is refused, naming where, never the key', (age, message) => {
    const e = errorOf(() => parseConfig(withAge(age), base));
    expect({ code: e.code, message: e.message }).toEqual({ code: 'CONFIG', message });
    for (const k of [KEY, OTHER]) {
      expect(e.message).not.toContain(secretPart(k.identity));
      expect(e.message.toLowerCase()).not.toContain(secretPart(k.identity).toLowerCase());
    }
  });

  it('loadConfig checks checksums with the age library, without quoting the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stn-config-age-'));
    try {
      const file = join(dir, 'ls.yml');
      const badId = flipped(KEY.identity);
      await writeFile(file, withAge(`identities: [${badId}]\nrecipients: [${KEY.recipient}]`));
      const err = (await loadConfig({ path: file, expandEnv: true, env: {}, cwd: dir, homeDir: dir }).catch(
        (e: unknown) => e,
      )) as ReplicateError;
      expect({ code: err.code, message: err.message }).toEqual({
        code: 'CONFIG',
        message: `config ${file}: dbs[0].replicas[0].age.identities[0]: not a valid age secret key (its checksum does not match: a character was changed or lost)`,
      });
      expect(JSON.stringify({ m: err.message, d: err.details, c: String(err.cause) })).not.toContain(secretPart(badId).slice(0, 20));

      await writeFile(file, withAge(`identities: [${KEY.identity}]\nrecipients: [${flipped(KEY.recipient)}]`));
      const rerr = (await loadConfig({ path: file, expandEnv: true, env: {}, cwd: dir, homeDir: dir }).catch(
        (e: unknown) => e,
      )) as ReplicateError;
      expect(rerr.message).toBe(
        `config ${file}: dbs[0].replicas[0].age.recipients[0]: not a valid age recipient (its checksum does not match: a character was changed or lost)`,
      );

      await writeFile(file, withAge(`identities: [${KEY.identity}]\nrecipients: [${KEY.recipient}, ${OTHER.recipient}]`));
      const ok = await loadConfig({ path: file, expandEnv: true, env: {}, cwd: dir, homeDir: dir });
      expect(ok.dbs[0]!.replicas[0]!.age).toEqual({ identities: [KEY.identity], recipients: [KEY.recipient, OTHER.recipient] });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
