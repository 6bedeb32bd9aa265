import { describe, expect, it } from 'vitest';
import { FileReplicaClient } from '../../../src/client/file-client.js';
import { buildReplicaClient, replicaFromUrl } from '../../../src/config/index.js';
import { isReplicateError, type ReplicateError } from '../../../src/errors.js';

function errorOf(fn: () => unknown): ReplicateError {
  try {
    fn();
  } catch (e) {
    if (isReplicateError(e)) return e;
    throw e;
  }
  throw new Error('expected an error');
}

describe('buildReplicaClient', () => {
  it('builds file clients at the resolved path', () => {
    const client = buildReplicaClient({ type: 'file', path: '/r' });
    expect(client).toBeInstanceOf(FileReplicaClient);
    expect(client.type).toBe('file');
    expect(client.location).toBe('/r');
  });

  it('needs a path for file replicas', () => {
    expect(errorOf(() => buildReplicaClient({ type: 'file' })).message).toBe('file replica path required');
  });

  it('builds an s3 client from bucket and prefix, without loading the SDK', () => {
    const c = buildReplicaClient({ type: 's3', bucket: 'bkt', path: 'station-db' });
    expect(c.type).toBe('s3');
    expect(c.location).toBe('s3://bkt/station-db');
    expect(c.snapshotLocation('0123456789abcdef', 1)).toBe(
      's3://bkt/station-db/generations/0123456789abcdef/snapshots/00000001.snapshot.lz4',
    );
    expect(errorOf(() => buildReplicaClient({ type: 's3' })).message).toBe('bucket required for s3 replica');
  });

  it('builds an abs client, with the key from the config or LITESTREAM_AZURE_ACCOUNT_KEY', () => {
    const c = buildReplicaClient(
      { type: 'abs', bucket: 'cont', path: 'db', accountName: 'acct' },
      { LITESTREAM_AZURE_ACCOUNT_KEY: 'a2V5' },
    );
    expect(c.location).toBe('abs://acct@cont/db');
    expect(errorOf(() => buildReplicaClient({ type: 'abs', bucket: 'cont', accountName: 'acct' })).message).toMatch(
      /account key required for abs replica/,
    );
  });

  it('builds a gcs client; the bucket root and STORAGE_EMULATOR_HOST in either form', () => {
    const c = buildReplicaClient({ type: 'gcs', bucket: 'bkt', path: '.' });
    expect(c.location).toBe('gcs://bkt/');
    expect(c.snapshotLocation('0123456789abcdef', 1)).toBe('gs://bkt/generations/0123456789abcdef/snapshots/00000001.snapshot.lz4');
    for (const host of ['127.0.0.1:4443', 'http://127.0.0.1:4443']) {
      const e = buildReplicaClient({ type: 'gcs', bucket: 'bkt', path: 'db' }, { STORAGE_EMULATOR_HOST: host });
      expect((e as unknown as { opts: { endpoint?: string } }).opts.endpoint).toBe('http://127.0.0.1:4443');
    }
    expect(errorOf(() => buildReplicaClient({ type: 'gcs' })).message).toBe('bucket required for gcs replica');
  });

  it('builds an sftp client (no connection yet): known_hosts by default, ~ expanded, the password never in its location', () => {
    const c = buildReplicaClient(
      { type: 'sftp', host: 'nas.local:2222', user: 'backup', password: 'hunter2', path: '/srv/db', keyPath: '~/.ssh/id_ed25519' },
      {},
      '/home/me',
    );
    expect(c.type).toBe('sftp');
    expect(c.location).toBe('sftp://backup@nas.local:2222/srv/db');
    expect(c.snapshotLocation('0123456789abcdef', 1)).toBe(
      'sftp://backup@nas.local:2222/srv/db/generations/0123456789abcdef/snapshots/00000001.snapshot.lz4',
    );
    const options = (c as unknown as { options: Record<string, unknown> }).options;
    expect(options).toMatchObject({ knownHostsPath: '/home/me/.ssh/known_hosts', keyPath: '/home/me/.ssh/id_ed25519' });
    // A relative path is below the login directory; port 22 by default.
    expect(buildReplicaClient({ type: 'sftp', host: 'h', user: 'u', path: 'db', knownHostsPath: '/k' }).location).toBe(
      'sftp://u@h:22/~/db',
    );
  });

  it('sftp: one way to trust the host key, a parsable host-key, and a home for the default known_hosts', () => {
    const base = { type: 'sftp' as const, host: 'h', user: 'u' };
    expect(errorOf(() => buildReplicaClient({ ...base, hostKey: 'ssh-ed25519 AAAA', knownHostsPath: '/k' }, {}, '/home/me'))).toMatchObject(
      {
        code: 'CONFIG',
        message: 'sftp replica: host-key and known-hosts-path are given together; give one',
      },
    );
    expect(
      errorOf(() => buildReplicaClient({ ...base, insecureIgnoreHostKey: true, knownHostsPath: '/k' }, {}, '/home/me')).message,
    ).toMatch(/known-hosts-path and insecure-ignore-host-key are given together/);
    expect(errorOf(() => buildReplicaClient({ ...base, hostKey: 'not a key' }, {}, '/home/me'))).toMatchObject({
      code: 'CONFIG',
      message: expect.stringMatching(/host-key: line 1 is not an SSH public key/),
    });
    expect(errorOf(() => buildReplicaClient(base)).message).toMatch(
      /no home directory for the default ~\/.ssh\/known_hosts; set known-hosts-path or host-key/,
    );
    expect(errorOf(() => buildReplicaClient({ ...base, host: 'h:x', knownHostsPath: '/k' })).message).toMatch(
      /sftp replica host "h:x" is not "host" or "host:port"/,
    );
    expect(buildReplicaClient({ ...base, insecureIgnoreHostKey: true }).type).toBe('sftp');
  });
});

describe('replicaFromUrl (command-line URL forms)', () => {
  it.each([
    ['file:///backups/db', { type: 'file', url: 'file:///backups/db', path: '/backups/db' }],
    ['file:rel', { type: 'file', url: 'file:rel', path: '/work/rel' }],
    ['s3://bkt/db', { type: 's3', url: 's3://bkt/db', bucket: 'bkt', path: 'db' }],
    [
      's3://bkt.localhost:9000/db',
      {
        type: 's3',
        url: 's3://bkt.localhost:9000/db',
        bucket: 'bkt',
        path: 'db',
        region: 'us-east-1',
        endpoint: 'http://localhost:9000',
        forcePathStyle: true,
      },
    ],
    ['gcs://bkt', { type: 'gcs', url: 'gcs://bkt', bucket: 'bkt', path: '.' }],
    ['abs://acct@cont/x/y', { type: 'abs', url: 'abs://acct@cont/x/y', bucket: 'cont', path: 'x/y', accountName: 'acct' }],
    ['sftp://u:pw@h:22/x', { type: 'sftp', url: 'sftp://u:pw@h:22/x', host: 'h:22', user: 'u', password: 'pw', path: '/x' }],
  ])('%s', (url, expected) => expect(replicaFromUrl(url, '/work', '/home/me')).toEqual(expected));

  it('rejects unknown schemes and URLs that name no replica', () => {
    const unknown = errorOf(() => replicaFromUrl('ftp://host/x', '/', '/'));
    expect({ code: unknown.code, message: unknown.message }).toEqual({
      code: 'UNKNOWN_REPLICA_TYPE',
      message: 'unknown replica type in URL: "ftp" (want file, s3, gcs, abs or sftp)',
    });
    const noBucket = errorOf(() => replicaFromUrl('s3://localhost:9000/db', '/', '/'));
    expect({ code: noBucket.code, message: noBucket.message }).toEqual({
      code: 'INVALID_ARGUMENT',
      message: 'replica URL s3://localhost:9000/db: bucket required for s3 replica',
    });
    expect(errorOf(() => replicaFromUrl('file://', '/', '/')).message).toBe('replica URL file://: file replica path required');
    const sftp = errorOf(() => replicaFromUrl('sftp://:secret@/x', '/', '/'));
    expect(sftp.message).toBe('replica URL sftp://:xxxxx@/x: host required for sftp replica');
  });

  it('builds a working client from a file URL', () => {
    expect(buildReplicaClient(replicaFromUrl('file:///tmp/replica', '/', '/')).location).toBe('/tmp/replica');
  });
});
