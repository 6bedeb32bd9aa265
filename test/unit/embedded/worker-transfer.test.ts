/**
 * What crosses into the replication worker thread: built-in clients as descriptions (and nothing that
 * could not be rebuilt faithfully), errors as plain data rebuilt with the same class, code and details.
 */
import { describe, expect, it } from 'vitest';
import { AbsReplicaClient } from '../../../src/client/abs-client.js';
import { FileReplicaClient } from '../../../src/client/file-client.js';
import { GcsReplicaClient } from '../../../src/client/gcs-client.js';
import { S3ReplicaClient } from '../../../src/client/s3-client.js';
import { SftpReplicaClient } from '../../../src/client/sftp-client.js';
import type { ReplicaClient } from '../../../src/client/replica-client.js';
import { clientFromDescription, describeClient } from '../../../src/embedded/client-transfer.js';
import { rebuildError, serializeError } from '../../../src/embedded/worker-protocol.js';
import { NotFoundError, ReplicateError } from '../../../src/errors.js';

describe('client transfer', () => {
  const clients: ReplicaClient[] = [
    new FileReplicaClient({ path: '/var/backups/db' }),
    new S3ReplicaClient({
      bucket: 'b',
      path: 'db',
      endpoint: 'http://127.0.0.1:9',
      accessKeyId: 'k',
      secretAccessKey: 's',
      requestTimeoutMs: 500,
    }),
    new GcsReplicaClient({ bucket: 'b', path: 'db', endpoint: 'http://127.0.0.1:9' }),
    new AbsReplicaClient({
      accountName: 'acct',
      accountKey: Buffer.from('key').toString('base64'),
      bucket: 'c',
      path: 'db',
      endpoint: 'http://127.0.0.1:9/acct',
    }),
    new SftpReplicaClient({
      host: '127.0.0.1:9',
      user: 'u',
      password: 'p',
      knownHostsPath: '/etc/ssh/ssh_known_hosts',
      path: '/srv/db',
      requestTimeoutMs: 500,
    }),
  ];

  it.each(clients.map((c) => [c.type, c] as const))(
    'rebuilds a %s client with the same type and location, through structured clone',
    (_type, client) => {
      const t = describeClient(client)!;
      expect(t).toBeDefined();
      const rebuilt = clientFromDescription(structuredClone(t.description));
      expect(rebuilt.constructor).toBe(client.constructor);
      expect(rebuilt.type).toBe(client.type);
      expect(rebuilt.location).toBe(client.location);
      // The counter handed over is the client's own: what the worker reports is added there.
      t.counter.add('PUT', 2);
      expect(client.requestCounts().PUT).toBe(2);
    },
  );

  it('refuses what it could not rebuild faithfully: a subclass, a method replaced on the instance, a custom client', () => {
    class Mine extends FileReplicaClient {}
    expect(describeClient(new Mine({ path: '/x' }))).toBeUndefined();
    const patched = new FileReplicaClient({ path: '/x' });
    patched.writeWalSegment = () => Promise.reject(new Error('injected'));
    expect(describeClient(patched)).toBeUndefined();
    const custom = { ...new FileReplicaClient({ path: '/x' }), type: 'mine' } as unknown as ReplicaClient;
    expect(describeClient(custom)).toBeUndefined();
  });
});

describe('errors across the thread boundary', () => {
  it('a ReplicateError keeps its class, code, message, details and cause', () => {
    const cause = Object.assign(new Error('ENOTDIR: not a directory'), { code: 'ENOTDIR' });
    const err = new ReplicateError('REPLICA_DIVERGED', 'replica x: diverged', { cause, details: { position: 'g/00000001:20', n: 3 } });
    const back = rebuildError(structuredClone(serializeError(err))) as ReplicateError;
    expect(back).toBeInstanceOf(ReplicateError);
    expect(back.code).toBe('REPLICA_DIVERGED');
    expect(back.message).toBe(err.message);
    expect(back.details).toEqual(err.details);
    expect((back.cause as Error).message).toBe(cause.message);
    expect((back.cause as { code?: string }).code).toBe('ENOTDIR');
    expect(back.stack).toBe(err.stack);
  });

  it('a NotFoundError stays one; other errors keep name, message and code; non-errors become text', () => {
    expect(rebuildError(serializeError(new NotFoundError('gone')))).toBeInstanceOf(NotFoundError);
    const range = rebuildError(serializeError(Object.assign(new RangeError('bad'), { code: 'ERR_X' })));
    expect([range.name, range.message, (range as { code?: string }).code]).toEqual(['RangeError', 'bad', 'ERR_X']);
    expect(rebuildError(serializeError('plain')).message).toBe('plain');
  });

  it('details structured clone refuses are sent as text', () => {
    const err = new ReplicateError('IO', 'x', { details: { fn: () => 1, ok: 1 } });
    const s = serializeError(err);
    expect(() => structuredClone(s)).not.toThrow();
    expect(s.details!.ok).toBe(1);
  });
});
