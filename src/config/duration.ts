/**
 * Durations as Litestream's config writes them: Go's `time.ParseDuration` grammar
 * (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, units ns us µs μs ms s m h, the bare string "0"), returned in
 * milliseconds. The arithmetic is Go's: integer nanoseconds (fractions below 1 ns are dropped),
 * the same overflow limit (±2^63 ns), the same fraction rounding.
 */
import { ReplicateError } from '../errors.js';

const UNIT_NS: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n, // U+00B5 micro sign
  μs: 1_000n, // U+03BC Greek mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

const LIMIT = 1n << 63n;

function invalid(text: string, detail = 'invalid duration'): ReplicateError {
  return new ReplicateError('INVALID_ARGUMENT', `${detail} ${JSON.stringify(text)}`, { details: { value: text } });
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

/** Go's leadingInt: digits as an integer; undefined on overflow. */
function leadingInt(s: string): { value: bigint; rest: string } | undefined {
  let i = 0;
  let x = 0n;
  for (; i < s.length && isDigit(s[i]); i++) {
    if (x > LIMIT / 10n) return undefined;
    x = x * 10n + BigInt(s.charCodeAt(i) - 48);
    if (x > LIMIT) return undefined;
  }
  return { value: x, rest: s.slice(i) };
}

/** Go's leadingFraction: digits after the point; stops gaining precision instead of overflowing. */
function leadingFraction(s: string): { value: bigint; scale: number; rest: string } {
  let i = 0;
  let x = 0n;
  let scale = 1;
  let overflow = false;
  for (; i < s.length && isDigit(s[i]); i++) {
    if (overflow) continue;
    if (x > (LIMIT - 1n) / 10n) {
      overflow = true;
      continue;
    }
    const y = x * 10n + BigInt(s.charCodeAt(i) - 48);
    if (y > LIMIT) {
      overflow = true;
      continue;
    }
    x = y;
    scale *= 10;
  }
  return { value: x, scale, rest: s.slice(i) };
}

/** Go's `time.ParseDuration`, in whole nanoseconds. Throws ReplicateError('INVALID_ARGUMENT'). */
export function parseDurationNs(text: string): bigint {
  let s = text;
  let neg = false;
  if (s !== '' && (s[0] === '-' || s[0] === '+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0n;
  if (s === '') throw invalid(text);
  let total = 0n;
  while (s !== '') {
    if (!(s[0] === '.' || isDigit(s[0]))) throw invalid(text);
    const int = leadingInt(s);
    if (int === undefined) throw invalid(text);
    const pre = int.rest.length !== s.length;
    s = int.rest;
    let post = false;
    let frac = 0n;
    let scale = 1;
    if (s[0] === '.') {
      s = s.slice(1);
      const f = leadingFraction(s);
      post = f.rest.length !== s.length;
      frac = f.value;
      scale = f.scale;
      s = f.rest;
    }
    if (!pre && !post) throw invalid(text); // e.g. ".s"
    let i = 0;
    while (i < s.length && s[i] !== '.' && !isDigit(s[i])) i++;
    if (i === 0) throw invalid(text, 'missing unit in duration');
    const unitName = s.slice(0, i);
    s = s.slice(i);
    const unit = UNIT_NS[unitName];
    if (unit === undefined) throw invalid(text, `unknown unit ${JSON.stringify(unitName)} in duration`);
    let v = int.value;
    if (v > LIMIT / unit) throw invalid(text);
    v *= unit;
    if (frac > 0n) {
      // Go uses float64 here too: exact to the nanosecond for fractions of an hour.
      v += BigInt(Math.trunc(Number(frac) * (Number(unit) / scale)));
      if (v > LIMIT) throw invalid(text);
    }
    total += v;
    if (total > LIMIT) throw invalid(text);
  }
  if (neg) return -total;
  if (total > LIMIT - 1n) throw invalid(text);
  return total;
}

/** Go's `time.ParseDuration` in milliseconds ("1h30m" → 5400000, "500us" → 0.5, "-1s" → -1000). */
export function parseDuration(text: string): number {
  return Number(parseDurationNs(text)) / 1e6;
}

/**
 * A duration value from YAML, in milliseconds; `where` names the file and place for messages.
 *
 * Strings go through parseDuration. DELIBERATE DIFFERENCE from Litestream: Go's yaml.v2 decodes a
 * bare YAML number into a time.Duration as NANOSECONDS (`sync-interval: 5` is 5 ns, which makes the
 * replica spin), a trap we do not copy: a bare number is rejected with a message asking for a unit.
 * A bare 0 is accepted, since it means the same in every unit.
 */
export function durationFromYaml(value: unknown, key: string, where = 'config'): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number' || typeof value === 'bigint') {
    if (Number(value) === 0) return 0;
    throw new ReplicateError('CONFIG', `${where}: ${key}: a bare number is ambiguous; write a duration with a unit such as "5s"`, {
      details: { key },
    });
  }
  if (typeof value !== 'string') {
    // Not a string: a YAML boolean (shown as written) or a structure.
    const shown = typeof value === 'boolean' ? String(value) : 'a structure';
    throw new ReplicateError('CONFIG', `${where}: ${key}: want a duration such as "5s", got ${shown}`, {
      details: { key },
    });
  }
  try {
    return parseDuration(value);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new ReplicateError('CONFIG', `${where}: ${key}: ${detail} (want e.g. "1s", "1h30m", "500ms"; units ns us ms s m h)`, {
      cause: err,
      details: { key },
    });
  }
}
