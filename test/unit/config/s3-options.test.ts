import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/index.js';

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
