import { describe, expect, it } from 'vitest';
import { endpointWithScheme, parseConfig, replicaFromUrl } from '../../../src/config/index.js';

const base = { expandEnv: true, env: {}, cwd: '/', homeDir: '/root', sourcePath: '/etc/litestream.yml' };

describe('s3 replica options', () => {
  it('reads checksums: when-required (for stores that reject trailing checksums)', () => {
    const c = parseConfig('dbs:\n  - path: /db\n    replicas:\n      - url: s3://bkt/db\n        checksums: when-required\n', base);
    expect(c.dbs[0]!.replicas[0]).toMatchObject({ type: 's3', bucket: 'bkt', path: 'db', checksums: 'when-required' });
    expect(c.warnings).toEqual([]);
  });
  it('rejects other values, naming the place', () => {
    expect(() => parseConfig('dbs:\n  - path: /db\n    replicas:\n      - url: s3://bkt/db\n        checksums: never\n', base)).toThrow(
      /dbs\[0\]\.replicas\[0\].*checksums: want "when-supported" or "when-required", got "never"/,
    );
  });
});

describe('s3 replica URL query options', () => {
  const resolve = (url: string) => replicaFromUrl(url, '/', '/root');

  it('endpoint, region, forcePathStyle and skipVerify are applied; an endpoint turns path style on', () => {
    expect(resolve('s3://bkt/db?endpoint=minio.lan:9000&region=eu-1&skipVerify=true')).toEqual({
      type: 's3',
      url: 's3://bkt/db?endpoint=minio.lan:9000&region=eu-1&skipVerify=true',
      bucket: 'bkt',
      path: 'db',
      endpoint: 'https://minio.lan:9000',
      region: 'eu-1',
      forcePathStyle: true,
      skipVerify: true,
    });
    expect(resolve('s3://bkt/db?endpoint=http://x:1&forcePathStyle=false')).toMatchObject({
      endpoint: 'http://x:1',
      forcePathStyle: false,
    });
    // They override what the host implies (here the MinIO-on-localhost preset).
    expect(resolve('s3://bkt.localhost:9000/db?region=eu-2&forcePathStyle=false')).toMatchObject({
      bucket: 'bkt',
      region: 'eu-2',
      endpoint: 'http://localhost:9000',
      forcePathStyle: false,
    });
    // Values are URL-decoded.
    expect(resolve('s3://bkt/db?endpoint=https%3A%2F%2Fs3.example.com')).toMatchObject({ endpoint: 'https://s3.example.com' });
  });

  it('a scheme-less endpoint gets http on local and private-network hosts, https elsewhere', () => {
    for (const h of [
      'localhost:9000',
      '127.0.0.1:9000',
      '10.1.2.3',
      '172.16.0.1:80',
      '172.31.9.9',
      '192.168.1.10:9000',
      'nas.local',
      'minio.localhost',
      '[::1]:9000',
    ]) {
      expect(endpointWithScheme(h), h).toBe(`http://${h}`);
    }
    for (const h of ['s3.example.com', '172.32.0.1', '11.0.0.1', 'minio.lan:9000']) expect(endpointWithScheme(h), h).toBe(`https://${h}`);
    expect(endpointWithScheme('HTTP://x')).toBe('HTTP://x');
  });

  it('refuses, by name, what it would otherwise ignore', () => {
    expect(() => resolve('s3://bkt/db?Endpoint=x')).toThrow(
      /unknown query option "Endpoint" in s3 replica URL \(supported: endpoint, region, forcePathStyle, skipVerify\)/,
    );
    expect(() => resolve('s3://bkt/db?skipVerify=1')).toThrow(/"skipVerify" in s3 replica URL must be true or false, got "1"/);
    expect(() => resolve('abs://acct@ctr/db?endpoint=x')).toThrow(/a abs replica URL takes no query options \(got "endpoint"\)/);
    const twice = 'dbs:\n  - path: /db\n    replicas:\n      - url: s3://bkt/db?endpoint=x\n        endpoint: http://y\n';
    expect(() => parseConfig(twice, base)).toThrow(
      /dbs\[0\]\.replicas\[0\]: endpoint is given twice: as "endpoint" in the url and as endpoint:/,
    );
  });

  it('a file URL keeps its query as part of the path, as in Litestream', () => {
    expect(resolve('file:///tmp/q?x=1')).toMatchObject({ type: 'file', path: '/tmp/q?x=1' });
  });
});
