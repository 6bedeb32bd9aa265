/**
 * The CLI's dead-process check for lease holders on this host (src/cli/lease-setup.ts), with real
 * processes: a holder is known gone only when it ran here, in our pid namespace, and its pid is free
 * (or is our own pid, which no other live process can have).
 */
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { holderGoneOnThisHost, leaseFor, pidNamespace } from '../../../src/cli/lease-setup.js';
import { FileReplicaClient } from '../../../src/client/file-client.js';
import { S3ReplicaClient } from '../../../src/client/s3-client.js';
import { GcsReplicaClient } from '../../../src/client/gcs-client.js';
import { AbsReplicaClient } from '../../../src/client/abs-client.js';
import { recordingLogger } from '../../helpers/recording-logger.js';

const ns = pidNamespace();

describe('holderGoneOnThisHost', () => {
  it.runIf(ns !== undefined)('is true for an exited process of this host, false while it runs', async () => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    const holder = { host: hostname(), pid: child.pid!, instance: 'x', pidNamespace: ns };
    expect(holderGoneOnThisHost(holder, ns)).toBe(false);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    expect(holderGoneOnThisHost(holder, ns)).toBe(true);
  });

  it('is true for another instance recorded with our own pid (an earlier run of this process id)', () => {
    expect(holderGoneOnThisHost({ host: hostname(), pid: process.pid, instance: 'x', pidNamespace: ns ?? 'none' }, ns ?? 'none')).toBe(
      true,
    );
  });

  it('never judges a holder of another host or pid namespace, or without a namespace', async () => {
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    await new Promise((r) => child.once('exit', r));
    const pid = child.pid!;
    expect(holderGoneOnThisHost({ host: `${hostname()}-other`, pid, instance: 'x', pidNamespace: ns }, ns)).toBe(false);
    expect(holderGoneOnThisHost({ host: hostname(), pid, instance: 'x', pidNamespace: 'pid:[1]' }, ns)).toBe(false);
    expect(holderGoneOnThisHost({ host: hostname(), pid, instance: 'x' }, ns)).toBe(false);
    expect(holderGoneOnThisHost({ host: hostname(), pid, instance: 'x', pidNamespace: ns }, undefined)).toBe(false);
  });
});

describe('leaseFor', () => {
  it('leases file, s3, gcs and abs replicas, not one configured lease: false; refuses a client without the lease primitives', () => {
    const log = recordingLogger();
    const file = new FileReplicaClient({ path: '/tmp/stn-lease-setup-unused' });
    const lease = leaseFor('file', file, { leaseTtlMs: 2000 }, log);
    expect(lease?.ttlMs).toBe(2000);
    expect(lease?.identity.pidNamespace).toBe(ns);
    expect(leaseFor('file', file, { lease: false }, log)).toBeUndefined();
    const s3 = new S3ReplicaClient({ bucket: 'b', path: 'p', region: 'us-east-1', accessKeyId: 'k', secretAccessKey: 's' });
    expect(leaseFor('s3', s3, {}, log)?.client).toBe(s3);
    const gcs = new GcsReplicaClient({ bucket: 'b', path: 'p' });
    expect(leaseFor('gcs', gcs, {}, log)?.client).toBe(gcs);
    const abs = new AbsReplicaClient({ accountName: 'a', accountKey: Buffer.from('k').toString('base64'), bucket: 'c', path: 'p' });
    expect(leaseFor('abs', abs, {}, log)?.client).toBe(abs);
    // A client of any other kind without the lease primitives is refused unless lease: false.
    const custom = Object.assign(Object.create(file) as FileReplicaClient, { type: 'custom', readLease: undefined, writeLease: undefined });
    expect(() => leaseFor('custom', custom, {}, log)).toThrow(
      expect.objectContaining({ code: 'LEASE_UNSUPPORTED', message: expect.stringMatching(/set lease: false/) }),
    );
    expect(leaseFor('custom', custom, { lease: false }, log)).toBeUndefined();
    expect(log.lines.map((l) => [l.level, l.msg.slice(0, 40)])).toEqual([
      ['warn', 'replicating without a lease (lease: fals'],
      ['warn', 'replicating without a lease (lease: fals'],
    ]);
  });
});
