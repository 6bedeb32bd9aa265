import { describe, expect, it } from 'vitest';
import { durationFromYaml, parseDuration, parseDurationNs } from '../../../src/config/index.js';
import { isReplicateError } from '../../../src/errors.js';

describe('parseDuration (Go time.ParseDuration)', () => {
  it.each([
    ['1s', 1000],
    ['1h30m', 5_400_000],
    ['24h', 86_400_000],
    ['500ms', 500],
    ['1.5h', 5_400_000],
    ['-1s', -1000],
    ['+1s', 1000],
    ['0', 0],
    ['-0', 0],
    ['+0', 0],
    ['0s', 0],
    ['10us', 0.01],
    ['1µs', 0.001], // U+00B5 micro sign
    ['1μs', 0.001], // U+03BC Greek mu
    ['1ns', 0.000001],
    ['.5s', 500],
    ['5.s', 5000],
    ['1m0.5s', 60_500],
    ['1h1m1s1ms', 3_661_001],
    ['3m3m', 360_000],
    ['0.25m', 15_000],
  ])('%s = %d ms', (text, ms) => expect(parseDuration(text)).toBeCloseTo(ms, 9));

  it('computes in whole nanoseconds as Go does', () => {
    expect(parseDurationNs('1h1m1s1ms1us1ns')).toBe(3_661_001_001_001n);
    expect(parseDurationNs('1.0000000001s')).toBe(1_000_000_000n); // below 1 ns is dropped
    expect(parseDurationNs('0.1ns')).toBe(0n);
    expect(parseDurationNs('1.5h')).toBe(5_400_000_000_000n);
    expect(parseDurationNs('2562047h47m16.854775807s')).toBe(2n ** 63n - 1n); // the largest Duration
    expect(parseDurationNs('-2562047h47m16.854775808s')).toBe(-(2n ** 63n)); // the smallest
    expect(parseDurationNs('9223372036854775807ns')).toBe(2n ** 63n - 1n);
    expect(parseDurationNs('1.00000000000000000000000000001s')).toBe(1_000_000_000n); // long fractions stop gaining precision
  });

  it.each([
    ['', 'invalid duration ""'],
    ['1d', 'unknown unit "d" in duration "1d"'],
    ['1w', 'unknown unit "w" in duration "1w"'],
    ['1S', 'unknown unit "S" in duration "1S"'],
    ['1 s', 'unknown unit " s" in duration "1 s"'],
    ['5', 'missing unit in duration "5"'],
    ['00', 'missing unit in duration "00"'],
    ['1s2', 'missing unit in duration "1s2"'],
    ['abc', 'invalid duration "abc"'],
    [' 1s', 'invalid duration " 1s"'],
    ['.s', 'invalid duration ".s"'],
    ['-.s', 'invalid duration "-.s"'],
    ['1.s.', 'invalid duration "1.s."'],
    ['-', 'invalid duration "-"'],
    ['+', 'invalid duration "+"'],
    ['1s-2s', 'unknown unit "s-" in duration "1s-2s"'], // Go's unit runs to the next digit or '.'
    ['9223372036854775808ns', 'invalid duration "9223372036854775808ns"'],
    ['2562047h47m16.854775808s', 'invalid duration "2562047h47m16.854775808s"'],
    ['99999999999999999999h', 'invalid duration "99999999999999999999h"'],
  ])('rejects %j', (text, message) => {
    let err: unknown;
    try {
      parseDuration(text);
    } catch (e) {
      err = e;
    }
    expect(isReplicateError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toBe(message);
  });
});

describe('durationFromYaml', () => {
  it('reads strings as Go durations and leaves null unset', () => {
    expect(durationFromYaml('5s', 'sync-interval')).toBe(5000);
    expect(durationFromYaml(undefined, 'sync-interval')).toBeUndefined();
    expect(durationFromYaml(null, 'sync-interval')).toBeUndefined();
  });

  it('rejects a bare number (Litestream would read it as nanoseconds), except 0', () => {
    expect(() => durationFromYaml(5, 'sync-interval')).toThrow(
      'config: sync-interval: a bare number is ambiguous; write a duration with a unit such as "5s"',
    );
    expect(() => durationFromYaml(1.5, 'retention', 'config /etc/l.yml: dbs[0].replicas[0]')).toThrow(
      'config /etc/l.yml: dbs[0].replicas[0]: retention: a bare number is ambiguous; write a duration with a unit such as "5s"',
    );
    expect(durationFromYaml(0, 'snapshot-interval')).toBe(0);
  });

  it('names the key and the place in every error, with code CONFIG', () => {
    for (const bad of ['1d', '', true, { a: 1 }, ['1s']]) {
      let err: unknown;
      try {
        durationFromYaml(bad, 'retention', 'config /x.yml: dbs[1]');
      } catch (e) {
        err = e;
      }
      expect(isReplicateError(err, 'CONFIG')).toBe(true);
      expect((err as Error).message).toMatch(/^config \/x\.yml: dbs\[1\]: retention: /);
    }
    expect(() => durationFromYaml('1d', 'retention')).toThrow(/^config: retention: unknown unit "d" in duration "1d"/);
  });
});
