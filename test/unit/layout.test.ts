import { describe, expect, it } from 'vitest';
import {
  ReplicaLayout,
  formatHex8,
  isGenerationName,
  parseShadowWalName,
  parseSnapshotName,
  parseWalSegmentName,
  snapshotName,
  walSegmentName,
} from '../../src/layout.js';
import { comparePos, formatPos } from '../../src/pos.js';

describe('object names', () => {
  it('formats names with 8 lowercase hex digits', () => {
    expect(snapshotName(0)).toBe('00000000.snapshot.lz4');
    expect(walSegmentName(0x1f, 0x1038)).toBe('0000001f_00001038.wal.lz4');
    expect(() => formatHex8(2 ** 32)).toThrow(RangeError);
  });

  it('parses only exact names, lowercase hex', () => {
    expect(parseSnapshotName('0000001f.snapshot.lz4')).toEqual({ index: 31 });
    expect(parseSnapshotName('0000001F.snapshot.lz4')).toBeUndefined();
    expect(parseSnapshotName('0000001f.snapshot.lz4.tmp')).toBeUndefined();
    expect(parseSnapshotName('1f.snapshot.lz4')).toBeUndefined();
    expect(parseWalSegmentName('00000002_00004080.wal.lz4')).toEqual({ index: 2, offset: 0x4080 });
    expect(parseWalSegmentName('00000002.wal.lz4')).toBeUndefined();
    expect(parseWalSegmentName('00000002_0000408G.wal.lz4')).toBeUndefined();
    expect(parseShadowWalName('00000003.wal')).toEqual({ index: 3 });
    expect(isGenerationName('4b4ad03957d1d037')).toBe(true);
    expect(isGenerationName('4B4AD03957D1D037')).toBe(false);
    expect(isGenerationName('4b4ad03957d1d03')).toBe(false);
  });

  it('builds keys with Go path.Join semantics', () => {
    const gen = '4b4ad03957d1d037';
    expect(new ReplicaLayout('').snapshotPath(gen, 0)).toBe(`generations/${gen}/snapshots/00000000.snapshot.lz4`);
    expect(new ReplicaLayout('.').walSegmentPath(gen, 1, 0)).toBe(`generations/${gen}/wal/00000001_00000000.wal.lz4`);
    expect(new ReplicaLayout('db//x/../y/').generationsDir()).toBe('db/y/generations');
    expect(new ReplicaLayout('/abs').generationDir(gen)).toBe(`/abs/generations/${gen}`);
    expect(() => new ReplicaLayout('').generationDir('../etc')).toThrow(/invalid generation/);
  });

  it('keeps the lease beside generations/, under lease/ on every backend', () => {
    expect(new ReplicaLayout('db').leaseObjectKey()).toBe('db/lease/lease.json');
    expect(new ReplicaLayout('').leaseObjectKey()).toBe('lease/lease.json');
    expect(new ReplicaLayout('.').leaseProbeKey('3f9c0a1b2c3d4e5f')).toBe('lease/probe-3f9c0a1b2c3d4e5f');
    expect(new ReplicaLayout('db').leaseRecordPath(2)).toBe('db/lease/0000000000000002.json');
  });
});

describe('positions', () => {
  it("prints Litestream's textual form", () => {
    expect(formatPos({ generation: '4b4ad03957d1d037', index: 0, offset: 16512 })).toBe('4b4ad03957d1d037/00000000:16512');
    expect(formatPos({ generation: '', index: 0, offset: 0 })).toBe('');
  });
  it('orders by generation, index, offset', () => {
    const g = 'aaaaaaaaaaaaaaaa';
    expect(comparePos({ generation: g, index: 1, offset: 0 }, { generation: g, index: 0, offset: 99 })).toBeGreaterThan(0);
    expect(comparePos({ generation: g, index: 1, offset: 5 }, { generation: g, index: 1, offset: 9 })).toBeLessThan(0);
    expect(comparePos({ generation: 'b', index: 0, offset: 0 }, { generation: g, index: 9, offset: 9 })).toBeGreaterThan(0);
  });
});
