/**
 * age-encrypted replicas with the real Litestream v0.3.13, both directions, on a file replica and on s3
 * (fauxqs), each from one config file that both tools read: Litestream restores what we write, we restore
 * what Litestream writes, and both list the same objects. Then the failures: no identity or the wrong one
 * (a named error, exit 1, nothing left behind, no secret printed), recipients without identities (it
 * replicates and says what will need the identity), identities without recipients (refused).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Decrypter } from 'age-encryption';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { KEY, OTHER, secretPart } from '../helpers/age-keys.js';
import { expectSameListings } from '../helpers/both-tools.js';
import { runBin, runCli } from '../helpers/cli.js';
import { expectRestoresTo, replicateSome, replicateThroughOutage, startReplicator, writeOracleConfig } from '../helpers/cloud-oracle.js';
import { mixedWrite, waitForUpload } from '../helpers/fixtures.js';
import { parseTable, runLitestream } from '../helpers/oracle.js';
import { contentDigest, openSourceDb } from '../helpers/source-db.js';
import { startFaultProxy } from '../servers/fault-proxy.js';
import { createBucket } from '../servers/s3-server.js';
import { FileReplicaClient } from '../../src/client/file-client.js';
import { S3ReplicaClient } from '../../src/client/s3-client.js';
import { startReplication, type InProcessReplication } from '../../src/replication.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-age-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The replica's `age:` lines for writeOracleConfig (indented under the replica item). */
function ageLines(age: { identities?: string[]; recipients?: string[] }): string[] {
  return [
    'age:',
    ...(age.identities ? ['  identities:', ...age.identities.map((k) => `    - ${k}`)] : []),
    ...(age.recipients ? ['  recipients:', ...age.recipients.map((k) => `    - ${k}`)] : []),
  ];
}

const BOTH: { identities?: string[]; recipients?: string[] } = { identities: [KEY.identity], recipients: [KEY.recipient] };

function fileConfig(name: string, dbPath: string, replicaDir: string, age?: { identities?: string[]; recipients?: string[] }): string {
  return writeOracleConfig(join(dir, `${name}.yml`), dbPath, ['type: file', `path: ${replicaDir}`, ...(age ? ageLines(age) : [])]);
}

function s3Config(name: string, dbPath: string, bucket: string, prefix: string, age = BOTH): string {
  return writeOracleConfig(join(dir, `${name}.yml`), dbPath, [
    'type: s3',
    `bucket: ${bucket}`,
    `path: ${prefix}`,
    `endpoint: ${inject('s3Endpoint')}`,
    'region: us-east-1',
    'force-path-style: true',
    'access-key-id: test-key',
    'secret-access-key: test-secret',
    ...ageLines(age),
  ]);
}

function filesUnder(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

/** Every object of a file replica is an age file whose plaintext (with `identity`) is one LZ4 frame. */
async function expectEncryptedLz4(replicaDir: string, identity: string): Promise<void> {
  const objects = filesUnder(join(replicaDir, 'generations'));
  expect(objects.some((f) => f.endsWith('.snapshot.lz4'))).toBe(true);
  expect(objects.some((f) => f.endsWith('.wal.lz4'))).toBe(true);
  const d = new Decrypter();
  d.addIdentity(identity);
  for (const f of objects) {
    const stored = readFileSync(f);
    expect(stored.subarray(0, 22).toString('latin1'), f).toBe('age-encryption.org/v1\n');
    const inner = Buffer.from(await d.decrypt(stored));
    expect(inner.subarray(0, 7).toString('hex'), f).toBe('04224d186470b9');
  }
}

function expectNoSecretIn(...texts: string[]): void {
  for (const t of texts) for (const k of [KEY, OTHER]) expect(t).not.toContain(secretPart(k.identity));
}

describe('age on a file replica, with the real Litestream', () => {
  it('what we replicate with age, Litestream restores and lists identically, from the same config', async () => {
    const dbPath = join(dir, 'ours.db');
    const replicaDir = join(dir, 'ours-replica');
    const config = fileConfig('ours', dbPath, replicaDir, BOTH);
    const digest = await replicateSome('ours', dbPath, config, 10);
    // Layering as Litestream's: an age file around one LZ4 frame (compressed, then encrypted).
    await expectEncryptedLz4(replicaDir, KEY.identity);
    await expectRestoresTo('litestream', config, dbPath, join(dir, 'ours-by-litestream.db'), digest);
    await expectSameListings(['-config', config, dbPath]);
    await expectRestoresTo('ours', config, dbPath, join(dir, 'ours-by-ours.db'), digest);
  });

  it('what Litestream replicates with age, we restore and list identically, from the same config', async () => {
    const dbPath = join(dir, 'theirs.db');
    const replicaDir = join(dir, 'theirs-replica');
    const config = fileConfig('theirs', dbPath, replicaDir, BOTH);
    const digest = await replicateSome('litestream', dbPath, config, 10);
    await expectEncryptedLz4(replicaDir, KEY.identity);
    await expectRestoresTo('ours', config, dbPath, join(dir, 'theirs-by-ours.db'), digest);
    await expectSameListings(['-config', config, dbPath]);
  });

  it("replicate -restore-if-db-not-exists restores an encrypted replica with the config's identity", async () => {
    const replicaDir = join(dir, 'ours-replica'); // written with age by the first test
    const booted = join(dir, 'booted.db');
    const config = fileConfig('boot', booted, replicaDir, BOTH);
    // The app (-exec) exits at once: replication then makes its final sync and stops.
    const r = await runBin(['replicate', '-restore-if-db-not-exists', '-config', config, '-exec', `${process.execPath} -e 0`]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/database restored/);
    expect(contentDigest(booted)).toBe(contentDigest(join(dir, 'ours.db')));
    expectNoSecretIn(r.stdout, r.stderr);
  });

  it('no identity or the wrong one: a named error, exit 1, nothing left behind, no secret printed', async () => {
    const dbPath = join(dir, 'ours.db'); // replicated with age by the first test
    const replicaDir = join(dir, 'ours-replica');
    const cases: { config: string[]; message: RegExp; hint: RegExp }[] = [
      {
        config: ['-config', fileConfig('wrong', dbPath, replicaDir, { identities: [OTHER.identity], recipients: [OTHER.recipient] })],
        message: /none of the age identities of replica file matches the recipients it was encrypted to/,
        hint: /hint: the object was encrypted to other recipients/,
      },
      {
        config: ['-config', fileConfig('none', dbPath, replicaDir)],
        message: /the object is age-encrypted and replica file has no age identities/,
        hint: /hint: list the secret key/,
      },
      // Recipients alone cannot decrypt (the same config replicates: see below).
      {
        config: ['-config', fileConfig('recipients', dbPath, replicaDir, { recipients: [KEY.recipient] })],
        message: /has no age identities/,
        hint: /hint: list the secret key/,
      },
    ];
    for (const c of cases) {
      const outDir = join(dir, `out-${randomBytes(3).toString('hex')}`);
      mkdirSync(outDir);
      const r = await runBin(['restore', ...c.config, '-o', join(outDir, 'restored.db'), dbPath]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(c.message);
      expect(r.stderr).toMatch(c.hint);
      expect(readdirSync(outDir), 'nothing left behind').toEqual([]);
      expectNoSecretIn(r.stdout, r.stderr);
    }
    // A replica URL has no keys (nor in Litestream): the same named error.
    const outDir = join(dir, 'out-url');
    mkdirSync(outDir);
    const url = await runBin(['restore', '-o', join(outDir, 'restored.db'), `file://${replicaDir}`]);
    expect(url.code).toBe(1);
    expect(url.stderr).toMatch(/the object is age-encrypted and replica file has no age identities/);
    expect(readdirSync(outDir)).toEqual([]);
    // Litestream fails too, and leaves its <out>.tmp behind (spec §11, B3).
    const ls = await runLitestream(['restore', '-config', join(dir, 'wrong.yml'), '-o', join(outDir, 'by-litestream.db'), dbPath]);
    expect(ls.code).toBe(1);
    expect(ls.stderr + ls.stdout).toMatch(/no identity matched any of the recipients/);
  });

  it('recipients without identities: replicates, warns that restore needs the identity, and a restart starts a new generation', async () => {
    const dbPath = join(dir, 'recipients.db');
    const replicaDir = join(dir, 'recipients-replica');
    const config = fileConfig('recipients-only', dbPath, replicaDir, { recipients: [KEY.recipient] });
    const full = fileConfig('recipients-full', dbPath, replicaDir, BOTH);
    const db = openSourceDb(dbPath);
    try {
      for (const run of [0, 1]) {
        const p = startReplicator('ours', config);
        try {
          await p.waitForLog(/snapshot written/);
          expect(p.lines.join('\n')).toMatch(
            /level=WARN msg="replica encrypts with age but has no identities: restoring it, validating it and continuing its generation after a restart need the identity/,
          );
          if (run === 1)
            expect(p.lines.join('\n')).toMatch(
              /level=WARN msg="replica cannot continue its generation: its last wal segment is age-encrypted/,
            );
          for (let step = 0; step < 3; step++) {
            const after = p.lines.length;
            db.transaction(mixedWrite(db, run * 10 + step))();
            await waitForUpload(p, dbPath, after);
          }
        } finally {
          expect(await p.stop('SIGTERM')).toBe(0);
        }
      }
      const gens = await runCli(['generations', '-config', config, dbPath]);
      expect(parseTable(gens.stdout)).toHaveLength(2);
      await expectEncryptedLz4(replicaDir, KEY.identity);
      // With the identity, both tools restore the latest state.
      const digest = contentDigest(db);
      await expectRestoresTo('litestream', full, dbPath, join(dir, 'recipients-by-litestream.db'), digest);
      await expectRestoresTo('ours', full, dbPath, join(dir, 'recipients-by-ours.db'), digest);
    } finally {
      db.close();
    }
  });

  it('validation and continue-after-restore read the encrypted replica with the identities', async () => {
    const dbPath = join(dir, 'validated.db');
    const replicaDir = join(dir, 'validated-replica');
    const app = openSourceDb(dbPath);
    const r = await startReplication({
      dbPath,
      replicas: [{ name: 'file', client: new FileReplicaClient({ path: replicaDir }), syncIntervalMs: 10, age: BOTH }],
      minCheckpointPageCount: 5,
      inline: true,
    });
    try {
      for (let step = 0; step < 4; step++) app.transaction(mixedWrite(app, step))();
      const v = await (r as InProcessReplication).replicas[0]!.validate();
      expect(v.status).toBe('ok');
    } finally {
      await r.close();
      app.close();
    }
    await expectEncryptedLz4(replicaDir, KEY.identity);

    // A restore through a config with continue-after-restore leaves its marker; replication then checks
    // (decrypting the last segment) that the replica still ends there, and continues the generation.
    const restored = join(dir, 'validated-restored.db');
    const config = join(dir, 'continue.yml');
    writeFileSync(
      config,
      [
        'logging:',
        '  level: debug',
        'dbs:',
        `  - path: ${restored}`,
        '    continue-after-restore: true',
        '    monitor-interval: 50ms',
        '    replicas:',
        `      - path: ${replicaDir}`,
        '        sync-interval: 10ms',
        ...ageLines(BOTH).map((l) => `        ${l}`),
        '',
      ].join('\n'),
    );
    const rr = await runCli(['restore', '-config', config, restored]);
    expect(rr.code, rr.stderr).toBe(0);
    const [generation] = readdirSync(join(replicaDir, 'generations'));
    const p = startReplicator('ours', config);
    const db = openSourceDb(restored);
    try {
      await p.waitForLog(/continuing generation/);
      const after = p.lines.length;
      db.transaction(mixedWrite(db, 9))();
      await waitForUpload(p, restored, after);
    } finally {
      expect(await p.stop('SIGTERM')).toBe(0);
    }
    expect(readdirSync(join(replicaDir, 'generations'))).toEqual([generation]);
    await expectRestoresTo('litestream', config, restored, join(dir, 'continued-by-litestream.db'), contentDigest(db));
    db.close();
  });

  it('identities without recipients: replicate refuses (Litestream would write unencrypted objects it cannot read back)', async () => {
    const dbPath = join(dir, 'identities.db');
    openSourceDb(dbPath).close();
    const config = fileConfig('identities-only', dbPath, join(dir, 'identities-replica'), { identities: [KEY.identity] });
    const p = startReplicator('ours', config);
    const code = await Promise.race([p.exit, new Promise<'running'>((r) => setTimeout(() => r('running'), 30_000))]);
    if (code === 'running') await p.stop('SIGKILL');
    expect(code, p.tail()).toBe(1);
    expect(p.stderr + p.stdout).toMatch(
      /age identities without recipients: snapshots and WAL segments would be written unencrypted; add the public key of each identity under age: recipients:/,
    );
    expectNoSecretIn(p.stdout, p.stderr);
  });
});

describe('age on s3 (fauxqs), with the real Litestream', () => {
  const bucket = `age-${randomBytes(4).toString('hex')}`;

  it('what we replicate with age to S3, Litestream restores and lists identically; and the other way round', async () => {
    await createBucket(inject('s3Endpoint'), bucket);
    const ours = join(dir, 's3-ours.db');
    const oursConfig = s3Config('s3-ours', ours, bucket, 'ours');
    const oursDigest = await replicateSome('ours', ours, oursConfig, 8);
    await expectRestoresTo('litestream', oursConfig, ours, join(dir, 's3-ours-by-litestream.db'), oursDigest);
    await expectSameListings(['-config', oursConfig, ours]);
    await expectRestoresTo('ours', oursConfig, ours, join(dir, 's3-ours-by-ours.db'), oursDigest);

    const theirs = join(dir, 's3-theirs.db');
    const theirsConfig = s3Config('s3-theirs', theirs, bucket, 'theirs');
    const theirsDigest = await replicateSome('litestream', theirs, theirsConfig, 8);
    await expectRestoresTo('ours', theirsConfig, theirs, join(dir, 's3-theirs-by-ours.db'), theirsDigest);
    await expectSameListings(['-config', theirsConfig, theirs]);

    // The wrong identity on s3: the same named error, nothing written.
    const outDir = join(dir, 's3-out');
    mkdirSync(outDir);
    const wrong = s3Config('s3-wrong', theirs, bucket, 'theirs', { identities: [OTHER.identity], recipients: [OTHER.recipient] });
    const r = await runBin(['restore', '-config', wrong, '-o', join(outDir, 'restored.db'), theirs]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/none of the age identities of replica s3 matches/);
    expect(readdirSync(outDir)).toEqual([]);
    expectNoSecretIn(r.stdout, r.stderr);
  });

  it('recipients without identities: a store outage does not start a new generation (the replica knows where its own uploads end)', async () => {
    const endpoint = inject('s3Endpoint');
    await createBucket(endpoint, `${bucket}-outage`);
    const proxy = await startFaultProxy(endpoint);
    const dbPath = join(dir, 's3-outage.db');
    const client = new S3ReplicaClient({
      bucket: `${bucket}-outage`,
      path: 'db',
      endpoint: proxy.endpoint,
      accessKeyId: 'k',
      secretAccessKey: 's',
      requestTimeoutMs: 500,
    });
    // replicateThroughOutage checks that the replica ends in one generation.
    const { app, errors } = await replicateThroughOutage({
      client,
      dbPath,
      proxy,
      mode: 'error503',
      outageWrites: 30,
      afterWrites: 3,
      attempts: 40,
      failingSync: /not uploaded to: s3/,
      age: { recipients: [KEY.recipient] },
    });
    expect(errors.length).toBeGreaterThan(0);
    const config = s3Config('s3-outage', dbPath, `${bucket}-outage`, 'db');
    await expectRestoresTo('litestream', config, dbPath, join(dir, 's3-outage-by-litestream.db'), contentDigest(app));
    app.close();
  }, 120_000);
});
