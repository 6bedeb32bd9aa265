import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatGoDuration, formatLag, formatTable, formatTimestamp } from '../../../src/cli/format.js';
import { normalizeArgs } from '../../../src/cli/main.js';
import { createProgress } from '../../../src/cli/progress.js';

describe('listing format', () => {
  it('aligns columns like Go tabwriter (padding 2, last column unpadded)', () => {
    expect(
      formatTable(
        ['replica', 'generation', 'index'],
        [
          ['file', '0a851050c2809a8a', '0'],
          ['s3', 'b', '12'],
        ],
      ),
    ).toBe('replica  generation        index\nfile     0a851050c2809a8a  0\ns3       b                 12\n');
  });
  it('prints RFC 3339 UTC seconds, truncated', () => {
    expect(formatTimestamp(new Date('2026-11-28T16:39:39.999Z'))).toBe('2026-11-28T16:39:39Z');
  });
  it('prints lag as Litestream does', () => {
    expect(formatLag(1234)).toBe('1.2s');
    expect(formatLag(24_567)).toBe('24s');
    expect(formatLag(48.7)).toBe('48ms');
    expect(formatLag(1_032_000)).toBe('17m12s');
    expect(formatLag(3_723_000)).toBe('1h2m3s');
    expect(formatLag(-1500)).toBe('-1.5s');
    expect(formatGoDuration(0)).toBe('0s');
    expect(formatGoDuration(0.5)).toBe('500µs');
  });
});

describe('argument normalisation', () => {
  it('accepts single-dash long flags and leaves the rest alone', () => {
    expect(
      normalizeArgs([
        'restore',
        '-timestamp',
        'T',
        '-o',
        'x',
        '-if-db-not-exists',
        '-config=/a.yml',
        '--index',
        '1',
        '-h',
        '--',
        '-replica',
      ]),
    ).toEqual(['restore', '--timestamp', 'T', '-o', 'x', '--if-db-not-exists', '--config=/a.yml', '--index', '1', '-h', '--', '-replica']);
  });
  it('splits -o=PATH (commander would take "=PATH" as the value), also when PATH holds "="', () => {
    expect(normalizeArgs(['restore', '-o=/tmp/a=b.db', 'file:///r', '--', '-o=x'])).toEqual([
      'restore',
      '-o',
      '/tmp/a=b.db',
      'file:///r',
      '--',
      '-o=x',
    ]);
  });
});

class FakeTty extends Writable {
  isTTY = true;
  columns = 100;
  text = '';
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void) {
    this.text += chunk.toString();
    cb();
  }
}

describe('progress', () => {
  it('draws a bar on a terminal for large restores, nothing otherwise', () => {
    const tty = new FakeTty();
    const io = { stdout: tty, stderr: tty, env: {}, cwd: '/', homeDir: '/' };
    const p = createProgress(io, 'restoring')!;
    const total = 100 * 1048576;
    p.update({ phase: 'download', bytesDone: 0, bytesTotal: total, indexesApplied: 0, indexesTotal: 3 });
    p.update({ phase: 'apply', bytesDone: total, bytesTotal: total, indexesApplied: 3, indexesTotal: 3 });
    p.stop();
    expect(tty.text).toMatch(/restoring .*100% \| 100\.0\/100\.0 MB \| apply/);

    const pipe = new FakeTty();
    pipe.isTTY = false;
    expect(createProgress({ ...io, stderr: pipe }, 'restoring')).toBeUndefined();
    const small = new FakeTty();
    const q = createProgress({ ...io, stderr: small }, 'restoring')!;
    q.update({ phase: 'download', bytesDone: 10, bytesTotal: 1000, indexesApplied: 0, indexesTotal: 0 });
    q.stop();
    expect(small.text).toBe('');
  });
});
