/**
 * Go `time.ParseDuration` for config values ("1s", "1h30m", "500ms", "1.5h"), returned in milliseconds.
 */
import { ReplicateError } from '../errors.js';

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses a Go duration string; throws RangeError with Go's wording for anything else. */
export function parseDuration(text: string): number {
  let s = text.trim();
  if (s === '') throw new RangeError(`invalid duration "${text}"`);
  let sign = 1;
  if (s[0] === '-' || s[0] === '+') {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw new RangeError(`invalid duration "${text}"`);
  let total = 0;
  const re = /^(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (s.length > 0) {
    const m = re.exec(s);
    if (!m) {
      const unit = /^(\d+\.?\d*|\.\d+)([^\d.]*)/.exec(s);
      if (unit && unit[2] === '') throw new RangeError(`missing unit in duration "${text}"`);
      if (unit) throw new RangeError(`unknown unit "${unit[2]}" in duration "${text}"`);
      throw new RangeError(`invalid duration "${text}"`);
    }
    total += parseFloat(m[1]!) * UNIT_MS[m[2]!]!;
    s = s.slice(m[0].length);
  }
  return sign * total;
}

/**
 * A duration from YAML. Strings go through parseDuration. A bare number is rejected: Litestream reads
 * it as nanoseconds (`sync-interval: 5` = 5 ns), a trap we deliberately do not copy.
 */
export function durationFromYaml(value: unknown, key: string, where: string): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'number') {
    throw new ReplicateError(
      'CONFIG',
      `${where}: ${key}: a bare number is ambiguous (Litestream reads it as nanoseconds); write a duration with a unit such as "${value}s"`,
    );
  }
  if (typeof value !== 'string') throw new ReplicateError('CONFIG', `${where}: ${key}: want a duration such as "1s", got ${JSON.stringify(value)}`);
  try {
    return parseDuration(value);
  } catch (err) {
    throw new ReplicateError('CONFIG', `${where}: ${key}: ${(err as Error).message}`, { cause: err });
  }
}
