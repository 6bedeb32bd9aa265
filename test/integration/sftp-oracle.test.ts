/**
 * The sftp backend on a real OpenSSH server with the real Litestream, both directions, from one config
 * file that both tools read (`host-key` is ours; Litestream v0.3.13 ignores the key, and checks no host
 * key at all): what we replicate, Litestream restores; what Litestream replicates, we restore; both
 * list every replica identically. Key login one way, password login (from ${SFTP_PASSWORD}) the other,
 * and the `sftp://user:password@host:port/path` URL form on the command line.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameListings } from '../helpers/both-tools.js';
import { runCli } from '../helpers/cli.js';
import { expectRestoresTo, replicateSome, writeOracleConfig } from '../helpers/cloud-oracle.js';
import { runLitestream } from '../helpers/oracle.js';
import { contentDigest } from '../helpers/source-db.js';
import { startSftpServer, type SftpServer } from '../servers/sftp-server.js';

const dir = mkdtempSync(join(tmpdir(), 'stn-sftp-oracle-'));
let server: SftpServer;
let env: Record<string, string>;
beforeAll(async () => {
  server = await startSftpServer();
  env = { SFTP_PASSWORD: server.password };
});
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function sftpConfig(dbPath: string, name: string, remote: string, login: 'key' | 'password'): string {
  return writeOracleConfig(join(dir, `${name}.yml`), dbPath, [
    'type: sftp',
    `host: ${server.address}`,
    `user: ${server.user}`,
    login === 'key' ? `key-path: ${server.keyPath}` : 'password: ${SFTP_PASSWORD}',
    `path: ${remote}`,
    `host-key: ${server.hostKey}`,
  ]);
}

describe('sftp replicas (OpenSSH sshd) with the real Litestream', () => {
  it('what we replicate, Litestream restores and lists identically', async () => {
    const dbPath = join(dir, 'ours.db');
    const config = sftpConfig(dbPath, 'ours', server.newDir('ours'), 'key');
    const digest = await replicateSome('ours', dbPath, config, 8, env);
    await expectRestoresTo('litestream', config, dbPath, join(dir, 'ours-by-litestream.db'), digest, env);
    await expectSameListings(['-config', config, dbPath], env);
  });

  it('what Litestream replicates, we restore and list identically; the URL form too', async () => {
    const dbPath = join(dir, 'theirs.db');
    const remote = server.newDir('theirs');
    const config = sftpConfig(dbPath, 'theirs', remote, 'password');
    const digest = await replicateSome('litestream', dbPath, config, 8, env);
    await expectRestoresTo('ours', config, dbPath, join(dir, 'theirs-by-ours.db'), digest, env);
    await expectSameListings(['-config', config, dbPath], env);

    // sftp://user:password@host:port/path, as Litestream takes it; ours checks the host key against
    // ~/.ssh/known_hosts of the home it is given.
    const home = join(dir, 'home');
    mkdirSync(join(home, '.ssh'), { recursive: true });
    writeFileSync(join(home, '.ssh', 'known_hosts'), `[${server.host}]:${server.port} ${server.hostKey}\n`);
    const url = `sftp://${server.user}:${server.password}@${server.address}${remote}`;
    const out = join(dir, 'theirs-by-url.db');
    const r = await runCli(['restore', '-o', out, url], { homeDir: home });
    expect(r.code, r.stderr).toBe(0);
    expect(contentDigest(out)).toBe(digest);
    expect(r.stdout + r.stderr).not.toContain(server.password);
    await expectSameListings([url], {}, home);
    const theirs = await runLitestream(['snapshots', url]);
    expect(theirs.code, theirs.stderr).toBe(0);
  });
});
