/**
 * What a user sees when an sftp replica cannot be used: a server whose host key is wrong or unknown, a
 * wrong password, a server that cannot be reached. Each is a named error (its own code in the library,
 * a message that says which and a hint on the command line), exit 1, nothing left in the output
 * directory, and the password printed nowhere. A correct config restores the same replica (so each
 * failure is the one named).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SftpReplicaClient } from '../../src/client/sftp-client.js';
import { startReplication } from '../../src/replication.js';
import { runBin, runCli } from '../helpers/cli.js';
import { freePort } from '../helpers/free-port.js';
import { contentDigest, openSourceDb } from '../helpers/source-db.js';
import { startSftpServer, type SftpServer } from '../servers/sftp-server.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-sftp-errors-'));
const dbPath = join(dir, 'app.db');
let server: SftpServer;
let remote: string;
let digest: string;
/** `ssh-keygen -lf` of the server's host key: the fingerprint the errors must name. */
let hostFingerprint: string;
const WRONG_PASSWORD = 'not-the-password-4711';

beforeAll(async () => {
  server = await startSftpServer();
  remote = server.newDir('replica');
  const app = openSourceDb(dbPath);
  app.prepare('INSERT INTO t (v, n) VALUES (?, ?)').run('backed up over sftp', 1);
  const client = new SftpReplicaClient({
    host: server.address,
    user: server.user,
    keyPath: server.keyPath,
    hostKey: server.hostKey,
    path: remote,
  });
  const r = await startReplication({ dbPath, replicas: [{ client, syncIntervalMs: 10 }], inline: true });
  await r.sync();
  await r.close();
  client.close();
  digest = contentDigest(app);
  app.close();
  writeFileSync(join(dir, 'host.pub'), `${server.hostKey}\n`);
  hostFingerprint = execFileSync('ssh-keygen', ['-lf', join(dir, 'host.pub')], { encoding: 'utf8' }).split(' ')[1]!;
});
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** A config naming the replica with `lines` (`host:`, `host-key:`…) and the password from $SFTP_PASSWORD. */
function config(lines: string[]): string {
  const path = join(dir, `case-${++n}.yml`);
  const replica = [`type: sftp`, `user: ${server.user}`, 'password: ${SFTP_PASSWORD}', `path: ${remote}`, ...lines];
  writeFileSync(
    path,
    ['dbs:', `  - path: ${dbPath}`, '    replicas:', ...replica.map((l, i) => `${i === 0 ? '      - ' : '        '}${l}`), ''].join('\n'),
  );
  return path;
}

function outDir(): string {
  const d = join(dir, `out-${++n}`);
  mkdirSync(d);
  return d;
}

function expectNoSecret(text: string): void {
  expect(text).not.toContain(server.password);
  expect(text).not.toContain(WRONG_PASSWORD);
}

/** `restore` and `snapshots` both fail with `message` and `hint`; the output directory stays empty. */
async function expectFails(cfg: string, password: string, message: RegExp, hint: RegExp): Promise<void> {
  const env = { SFTP_PASSWORD: password };
  const out = outDir();
  const r = await runCli(['restore', '-config', cfg, '-o', join(out, 'restored.db'), dbPath], { env });
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).toMatch(hint);
  expectNoSecret(r.stdout + r.stderr);
  expect(readdirSync(out)).toEqual([]);
  const s = await runCli(['snapshots', '-config', cfg, dbPath], { env });
  expect(s.code, s.stderr).toBe(1);
  expect(s.stderr).toMatch(message);
  expectNoSecret(s.stdout + s.stderr);
}

describe('sftp replicas that cannot be used', () => {
  it('a correct config restores the replica (the control case)', async () => {
    const out = join(outDir(), 'restored.db');
    const r = await runCli(
      ['restore', '-config', config([`host: ${server.address}`, `known-hosts-path: ${server.knownHostsPath}`]), '-o', out, dbPath],
      { env: { SFTP_PASSWORD: server.password } },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(contentDigest(out)).toBe(digest);
  });

  it('a host key that does not match: HOST_KEY_NOT_TRUSTED, naming the host and the offered fingerprint', async () => {
    const otherKey = readFileSync(`${server.keyPath}.pub`, 'utf8').trim(); // a real key, not the server's
    const cfg = config([`host: ${server.address}`, `host-key: ${otherKey}`]);
    await expectFails(
      cfg,
      server.password,
      new RegExp(
        `\\[sftp\\] connecting to stn-sftp@127\\.0\\.0\\.1:${server.port}: the server's host key does not match: it offered ssh-ed25519 ${escape(hostFingerprint)}, but the replica's host-key lists ssh-ed25519 SHA256:`,
      ),
      /hint: an sftp replica trusts the host key in its host-key/,
    );
  });

  it('a host that known_hosts does not list: HOST_KEY_NOT_TRUSTED (unknown), with the fingerprint to check', async () => {
    const empty = join(dir, 'known_hosts.empty');
    writeFileSync(empty, `# nothing here\n[127.0.0.1]:1 ${server.hostKey}\n`);
    const cfg = config([`host: ${server.address}`, `known-hosts-path: ${empty}`]);
    await expectFails(
      cfg,
      server.password,
      new RegExp(
        `the server's host key is unknown: it offered ssh-ed25519 ${escape(hostFingerprint)}, and known_hosts file ${escape(empty)} has no key for \\[127\\.0\\.0\\.1\\]:${server.port}`,
      ),
      /hint:/,
    );
  });

  it('a wrong password: AUTH_FAILED, and no password printed', async () => {
    const cfg = config([`host: ${server.address}`, `host-key: ${server.hostKey}`]);
    await expectFails(
      cfg,
      WRONG_PASSWORD,
      /connecting to stn-sftp@127\.0\.0\.1:\d+: the server refused the login of stn-sftp \(tried: password\)/,
      /hint: check the replica's user, password and key-path/,
    );
  });

  it('a port nobody listens on, and a host name that does not resolve: UNREACHABLE', async () => {
    const port = await freePort();
    await expectFails(
      config([`host: 127.0.0.1:${port}`, `host-key: ${server.hostKey}`]),
      server.password,
      new RegExp(`connecting to stn-sftp@127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`),
      /hint: check the host and port/,
    );
    await expectFails(
      config(['host: no-such-host.invalid', `host-key: ${server.hostKey}`]),
      server.password,
      /connecting to stn-sftp@no-such-host\.invalid:22: getaddrinfo ENOTFOUND no-such-host\.invalid/,
      /hint: check the host and port/,
    );
  });

  it('the library gives each its code', async () => {
    const client = (o: Partial<ConstructorParameters<typeof SftpReplicaClient>[0]>) =>
      new SftpReplicaClient({
        host: server.address,
        user: server.user,
        password: server.password,
        hostKey: server.hostKey,
        path: remote,
        ...o,
      });
    const codeOf = (c: SftpReplicaClient) =>
      c.generations().then(
        () => 'ok',
        (e: { code?: string }) => e.code,
      );
    expect(await codeOf(client({}))).toBe('ok');
    expect(await codeOf(client({ hostKey: readFileSync(`${server.keyPath}.pub`, 'utf8') }))).toBe('HOST_KEY_NOT_TRUSTED');
    expect(await codeOf(client({ password: WRONG_PASSWORD }))).toBe('AUTH_FAILED');
    expect(await codeOf(client({ host: `127.0.0.1:${await freePort()}` }))).toBe('UNREACHABLE');
    // A key that cannot be used is the config's fault: a missing file, a passphrase-protected key.
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'a passphrase', '-f', join(dir, 'encrypted_key')]);
    const missing = await client({ password: undefined, keyPath: join(dir, 'no-such-key') })
      .generations()
      .catch((e: Error) => e);
    expect(missing).toMatchObject({ code: 'CONFIG', message: expect.stringMatching(/^\[sftp\] reading key-path .*no-such-key: ENOENT/) });
    const encrypted = await client({ password: undefined, keyPath: join(dir, 'encrypted_key') })
      .generations()
      .catch((e: Error) => e);
    expect(encrypted).toMatchObject({
      code: 'CONFIG',
      message: expect.stringMatching(
        /^\[sftp\] key-path .*encrypted_key: .*(passphrase|Encrypted).*an unencrypted OpenSSH or PEM private key is needed/,
      ),
    });
  });

  it('replicate (the binary) stops at once with the error and exit 1 when the host key is wrong', async () => {
    const cfg = config([`host: ${server.address}`, `host-key: ${readFileSync(`${server.keyPath}.pub`, 'utf8').trim()}`]);
    const r = await runBin(['replicate', '-config', cfg], { env: { SFTP_PASSWORD: server.password } });
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/the server's host key does not match: it offered ssh-ed25519 SHA256:/);
    expectNoSecret(r.stdout + r.stderr);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
