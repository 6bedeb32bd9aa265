/**
 * Config and replica URL errors as the built binary reports them: a missing config names -config and
 * LITESTREAM_CONFIG; every command that reads the config warns about unknown keys; an s3 URL's query
 * options (endpoint, region, forcePathStyle, skipVerify) work against a real S3 server or are refused by
 * name; and an S3 replica leaves no AWS SDK notice on stderr.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { encodeLz4Frame } from '../../src/internal/lz4-frame.js';
import { runBin } from '../helpers/cli.js';
import { parseTable } from '../helpers/oracle.js';
import { createBucket } from '../servers/s3-server.js';

const require = createRequire(import.meta.url);
const GEN = '0123456789abcdef';
const CREDS = { LITESTREAM_ACCESS_KEY_ID: 'test', LITESTREAM_SECRET_ACCESS_KEY: 'test' };
let dir: string;
let dbPath: string;
let endpoint: string;
let hostPort: string;
let bucket: string;
let tls: Server | undefined;
let tlsPort: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stn-config-s3url-'));
  dbPath = join(dir, 'app.db');
  endpoint = inject('s3Endpoint');
  hostPort = new URL(endpoint).host;
  bucket = `cli-url-${randomBytes(4).toString('hex')}`;
  await createBucket(endpoint, bucket);
  // One generation with a snapshot of a real database, written by our S3 client.
  const src = join(dir, 'source.db');
  const db = new Database(src);
  db.pragma('journal_mode = WAL');
  db.exec("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('from s3');");
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const bytes = readFileSync(src);
  const client = new S3ReplicaClient({ bucket, path: 'db', endpoint, region: 'us-east-1', accessKeyId: 'test', secretAccessKey: 'test' });
  await client.writeSnapshot(GEN, 0, encodeLz4Frame(Readable.from([bytes])));

  // The same S3 server behind TLS with a self-signed certificate, as a private store may be.
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const target = new URL(endpoint);
  tls = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => tls!.listen(0, '127.0.0.1', resolve));
  tlsPort = (tls.address() as { port: number }).port;
}, 60_000);
afterAll(async () => {
  await new Promise((resolve) => (tls ? tls.close(resolve) : resolve(undefined)));
  rmSync(dir, { recursive: true, force: true });
});

function s3Url(query: string): string {
  return `s3://${bucket}/db?${query}`;
}

describe('a missing config file', () => {
  it('names -config and LITESTREAM_CONFIG, for every command that reads one', async () => {
    const missing = join(dir, 'nope.yml');
    for (const args of [
      ['restore', dbPath],
      ['generations', dbPath],
      ['snapshots', dbPath],
      ['wal', dbPath],
      ['databases'],
      ['replicate'],
    ]) {
      const viaFlag = await runBin([...args, '-config', missing]);
      expect(viaFlag.code, args[0]).toBe(1);
      expect(viaFlag.stderr, args[0]).toBe(`error: config file not found: ${missing} (given with -config)\n`);
      const viaEnv = await runBin(args, { env: { LITESTREAM_CONFIG: missing } });
      expect(viaEnv.stderr, args[0]).toBe(
        `error: config file not found: ${missing} (from $LITESTREAM_CONFIG; -config PATH names another file)\n`,
      );
    }
    expect(existsSync('/etc/litestream.yml'), 'this machine has a default config; the next check needs none').toBe(false);
    const dflt = await runBin(['databases']);
    expect(dflt.stderr).toBe(
      'error: config file not found: /etc/litestream.yml (the default; name the file with -config PATH or set LITESTREAM_CONFIG)\n',
    );
  });
});

describe('unknown config keys', () => {
  it('are reported by every command that reads the config, as replicate does', async () => {
    const replica = join(dir, 'file-replica');
    const cfg = join(dir, 'unknown-keys.yml');
    writeFileSync(
      cfg,
      `exit-on-error: true\ndbs:\n  - path: ${dbPath}\n    monitorInterval: 1s\n    replicas:\n      - path: ${replica}\n        retention_check: 1h\n`,
    );
    const expected = [
      `warning: config ${cfg}: unknown key "exit-on-error" ignored`,
      `warning: config ${cfg}: dbs[0]: unknown key "monitorInterval" ignored (did you mean "monitor-interval"?)`,
      `warning: config ${cfg}: dbs[0].replicas[0]: unknown key "retention_check" ignored`,
    ];
    for (const args of [
      ['generations', dbPath],
      ['snapshots', dbPath],
      ['wal', dbPath],
      ['databases'],
      ['restore', '-if-replica-exists', dbPath],
    ]) {
      const r = await runBin([...args, '-config', cfg]);
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(0);
      expect(
        r.stderr.split('\n').filter((l) => l.startsWith('warning:')),
        args[0],
      ).toEqual(expected);
    }
  });
});

describe('s3 replica URL query options', () => {
  it('endpoint (no scheme: http for a local host) and region make a URL enough to list and restore; no AWS SDK notice', async () => {
    const url = s3Url(`endpoint=${hostPort}&region=us-east-1`);
    const gens = await runBin(['generations', url], { env: CREDS });
    expect(gens.code, gens.stderr).toBe(0);
    expect(parseTable(gens.stdout).map((g) => [g.name, g.generation, g.status])).toEqual([['s3', GEN, 'current']]);
    const out = join(dir, 'from-s3.db');
    const r = await runBin(['restore', '-o', out, url], { env: CREDS });
    expect(r.code, r.stderr).toBe(0);
    // One line: what was restored. Nothing from the SDK (it announces on Node < 22 that later releases need 22).
    expect(r.stderr).toMatch(
      new RegExp(
        `^restored ${out} to \\S+ \\(replica s3, generation ${GEN}, index 0, offset 0; from snapshot index 0, 0 WAL indexes\\)\\n$`,
      ),
    );
    const db = new Database(out, { readonly: true });
    expect(db.prepare('SELECT v FROM t').all()).toEqual([{ v: 'from s3' }]);
    db.close();
    // forcePathStyle=true with an explicit scheme is the same store.
    const explicit = await runBin(['snapshots', s3Url(`endpoint=${endpoint}&region=us-east-1&forcePathStyle=true`)], { env: CREDS });
    expect(explicit.code, explicit.stderr).toBe(0);
    expect(parseTable(explicit.stdout).map((s) => s.generation)).toEqual([GEN]);
  });

  it('the SDK does print its notice without the switch the CLI sets (so the check above can fail)', () => {
    const script = `const { S3Client } = require(${JSON.stringify(require.resolve('@aws-sdk/client-s3'))}); new S3Client({ region: 'us-east-1' });`;
    const child = spawnSync(process.execPath, ['-e', script], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8' });
    const major = Number(process.versions.node.split('.')[0]);
    expect(/NodeVersionSupportWarning|AWS SDK for JavaScript/.test(child.stderr), child.stderr).toBe(major < 22);
  });

  it('skipVerify=true accepts a self-signed certificate, which is refused without it', async () => {
    const tlsEndpoint = `https://127.0.0.1:${tlsPort}`;
    const strict = await runBin(['generations', s3Url(`endpoint=${tlsEndpoint}&region=us-east-1`)], { env: CREDS });
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(/self[- ]signed certificate/i);
    const relaxed = await runBin(['generations', s3Url(`endpoint=${tlsEndpoint}&region=us-east-1&skipVerify=true`)], { env: CREDS });
    expect(relaxed.code, relaxed.stderr).toBe(0);
    expect(parseTable(relaxed.stdout).map((g) => g.generation)).toEqual([GEN]);
  });

  it('refuses what it would otherwise ignore: unknown or repeated options, bad booleans, options also set by config keys, queries on other types', async () => {
    const cases: [string[], string][] = [
      [
        ['generations', s3Url('endpoint=x&foo=1&sse=aws:kms')],
        `unknown query options "foo", "sse" in s3 replica URL (supported: endpoint, region, forcePathStyle, skipVerify)`,
      ],
      [['generations', s3Url('region=a&region=b')], 'query option "region" is given twice in s3 replica URL'],
      [['generations', s3Url('forcePathStyle=yes')], 'query option "forcePathStyle" in s3 replica URL must be true or false, got "yes"'],
      [['generations', s3Url('endpoint=')], 'query option "endpoint" in s3 replica URL has no value'],
      [
        ['generations', `gcs://${bucket}/db?endpoint=x`],
        'a gcs replica URL takes no query options (got "endpoint"); use the replica\'s config keys',
      ],
    ];
    for (const [args, message] of cases) {
      const r = await runBin(args, { env: CREDS });
      expect(r.code, args[1]).toBe(1);
      expect(r.stderr, args[1]).toContain(message);
      expect(r.stderr, args[1]).toMatch(/^error: replica URL /);
    }
    const cfg = join(dir, 'twice.yml');
    writeFileSync(
      cfg,
      `dbs:\n  - path: ${dbPath}\n    replicas:\n      - url: ${s3Url(`endpoint=${hostPort}&region=us-east-1`)}\n        region: eu-west-1\n`,
    );
    const twice = await runBin(['generations', '-config', cfg, dbPath], { env: CREDS });
    expect(twice.code).toBe(1);
    expect(twice.stderr).toBe(`error: config ${cfg}: dbs[0].replicas[0]: region is given twice: as "region" in the url and as region:\n`);
  });
});
