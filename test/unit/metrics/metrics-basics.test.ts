/**
 * The pure parts of the metrics endpoint: `addr` parsing (Litestream's forms and its "must specify port"
 * rule) and the health verdict over statuses.
 */
import { describe, expect, it } from 'vitest';
import { isReplicateError } from '../../../src/errors.js';
import { evaluateHealth } from '../../../src/metrics/health.js';
import { parseBindAddress } from '../../../src/metrics/metrics-server.js';
import type { ReplicaStats, ReplicationStatus } from '../../../src/replication-status.js';

describe('parseBindAddress', () => {
  it('reads host:port, :port (every interface) and [v6]:port', () => {
    expect(parseBindAddress(':9090')).toEqual({ host: undefined, port: 9090 });
    expect(parseBindAddress('localhost:9090')).toEqual({ host: 'localhost', port: 9090 });
    expect(parseBindAddress('0.0.0.0:80')).toEqual({ host: '0.0.0.0', port: 80 });
    expect(parseBindAddress('[::1]:9090')).toEqual({ host: '::1', port: 9090 });
  });

  it('requires a port, as Litestream does', () => {
    for (const addr of ['localhost', 'localhost:', ':', '', '::1']) {
      let err: unknown;
      try {
        parseBindAddress(addr);
      } catch (e) {
        err = e;
      }
      expect(isReplicateError(err) && err.code, addr).toBe('CONFIG');
      expect((err as Error).message, addr).toMatch(/must specify port for bind address/);
    }
    expect(() => parseBindAddress('host:99999')).toThrow(/invalid port/);
  });
});

function replica(name: string, lagSeconds: number, error?: string): ReplicaStats {
  const op = { count: 0, bytes: 0 };
  return {
    name,
    type: 's3',
    location: 's3://b/p',
    position: undefined,
    lagSeconds,
    lastUploadAt: undefined,
    walBytes: 0,
    operations: { LIST: op, PUT: op, GET: op, DELETE: op },
    validations: { ok: 0, mismatch: 0, error: 0 },
    ...(error !== undefined ? { error } : {}),
  };
}

function status(dbPath: string, replicas: ReplicaStats[]): ReplicationStatus {
  return { dbPath, position: undefined, shipper: {} as ReplicationStatus['shipper'], replicas };
}

describe('evaluateHealth', () => {
  it('is healthy while every replica is within the threshold (an idle failing one included)', () => {
    const r = evaluateHealth([status('/a.db', [replica('s3', 0.2), replica('file', 0, 'boom')])], 1000);
    expect(r).toEqual({
      healthy: true,
      status: 'ok',
      maxLagSeconds: 1,
      replicas: [
        { db: '/a.db', name: 's3', lagSeconds: 0.2, behind: false },
        { db: '/a.db', name: 'file', lagSeconds: 0, behind: false, error: 'boom' },
      ],
    });
  });

  it('names the replica that is behind, and by how much', () => {
    const r = evaluateHealth([status('/a.db', [replica('s3', 0.1)]), status('/b.db', [replica('s3', 12.3456, 'timeout')])], 10_000);
    expect(r.healthy).toBe(false);
    expect(r.status).toBe('behind');
    expect(r.replicas.filter((x) => x.behind)).toEqual([{ db: '/b.db', name: 's3', lagSeconds: 12.346, behind: true, error: 'timeout' }]);
  });

  it('is healthy with nothing to report on', () => {
    expect(evaluateHealth([], 1000).healthy).toBe(true);
  });
});
