/**
 * YAML for litestream.yml, read the way Litestream's decoder (gopkg.in/yaml.v2 into typed Go fields)
 * reads it, using the `yaml` package for the syntax:
 *
 * - string fields take an unquoted value exactly as written (`password: 0777` is "0777", not 511 or
 *   777; `bucket: 1e3` is "1e3"), as yaml.v2 does for a Go string field;
 * - booleans accept YAML 1.1's words (`yes`, `on`, `y`, `off`, …) as yaml.v2 does;
 * - integers follow yaml.v2 (Go `ParseInt` base 0: `0x1f`, `0o17`, `017` octal, `0b101`, `1_000`);
 * - merge keys (`<<: *anchor`) and aliases work; duplicate keys are an error (both as in yaml.v2).
 *
 * Parse errors name the line and column but never quote the text: after env expansion it may hold
 * secrets.
 */
import { createRequire } from 'node:module';

// Loaded on first use, not at start-up: the YAML parser is the largest module the CLI loads (~20 ms),
// and a command given a replica URL never reads a config.
let yamlModule: typeof import('yaml') | undefined;
const yaml = (): typeof import('yaml') => (yamlModule ??= createRequire(import.meta.url)('yaml') as typeof import('yaml'));
import { ReplicateError } from '../errors.js';
import { durationFromYaml } from './duration.js';

/** An unquoted scalar: the value the YAML 1.2 core schema gives it, and its text as written. */
export class PlainScalar {
  constructor(
    readonly value: unknown,
    readonly text: string,
  ) {}
}

export interface ParsedYaml {
  root: unknown;
  warnings: string[];
}

function lineCol(text: string, offset: number): string {
  const before = text.slice(0, Math.max(0, offset));
  const line = before.split('\n').length;
  const col = offset - before.lastIndexOf('\n');
  return `line ${line}, column ${col}`;
}

/** Parses YAML into plain objects and arrays whose unquoted scalars are PlainScalar. */
export function parseYaml(text: string, where: string): ParsedYaml {
  const { parseDocument, visit } = yaml();
  const doc = parseDocument(text, { merge: true, prettyErrors: false, uniqueKeys: true });
  const first = doc.errors[0];
  if (first) {
    throw new ReplicateError('CONFIG', `${where}: invalid YAML at ${lineCol(text, first.pos[0])}: ${first.message}`, {
      details: { code: first.code },
    });
  }
  visit(doc, {
    Scalar(key, node) {
      if (key !== 'key' && node.type === 'PLAIN') node.value = new PlainScalar(node.value, node.source ?? String(node.value));
    },
  });
  let root: unknown;
  try {
    root = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    throw new ReplicateError('CONFIG', `${where}: invalid YAML: ${(err as Error).message}`, { cause: err });
  }
  const warnings = doc.warnings.map((w) => `${where}: YAML at ${lineCol(text, w.pos[0])}: ${w.message}`);
  return { root, warnings };
}

const TRUE_WORDS = new Set(['y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON']);
const FALSE_WORDS = new Set(['n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF']);

/** yaml.v2's reading of an unquoted scalar as a number (int or float), else undefined. */
export function goYamlNumber(text: string): number | undefined {
  if (!/^[-+.0-9]/.test(text)) return undefined;
  const plain = text.replace(/_/g, '');
  const m = /^([+-]?)(?:0[xX]([0-9a-fA-F]+)|0[oO]([0-7]+)|0[bB]([01]+)|0([0-7]*)|([1-9][0-9]*))$/.exec(plain);
  if (m) {
    const [, sign, hex, oct, bin, oldOct, dec] = m;
    const digits =
      hex !== undefined
        ? `0x${hex}`
        : oct !== undefined
          ? `0o${oct}`
          : bin !== undefined
            ? `0b${bin}`
            : oldOct !== undefined
              ? `0o${oldOct || '0'}`
              : dec!;
    const n = Number(BigInt(digits));
    return sign === '-' ? -n : n;
  }
  if (/^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(plain)) return Number(plain);
  return undefined;
}

export type YamlObject = Record<string, unknown>;

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (v instanceof PlainScalar) return v.value === null ? 'nothing' : 'a plain value';
  if (typeof v === 'object' && v !== null) return 'a mapping';
  return `a ${typeof v}`;
}

export function isYamlObject(v: unknown): v is YamlObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof PlainScalar);
}

export function isNull(v: unknown): boolean {
  return v === undefined || v === null || (v instanceof PlainScalar && v.value === null);
}

/**
 * Typed reads from one YAML mapping. `where` names the file and place ("config /etc/l.yml:
 * dbs[0].replicas[1]"); messages are "<where>: <key>: <detail>" and never quote string values.
 */
export class Fields {
  constructor(
    readonly where: string,
    readonly obj: YamlObject,
  ) {}

  /** A mapping (null → empty), or an error naming the place. */
  static of(value: unknown, where: string): Fields {
    if (isNull(value)) return new Fields(where, {});
    if (!isYamlObject(value)) throw new ReplicateError('CONFIG', `${where}: want a mapping, got ${describe(value)}`);
    return new Fields(where, value);
  }

  fail(key: string, detail: string): ReplicateError {
    return new ReplicateError('CONFIG', `${this.where}: ${key}: ${detail}`, { details: { key } });
  }

  /** Keys not in `known`, each reported once as "unknown key … ignored". */
  reportUnknown(known: readonly string[], warnings: string[]): void {
    for (const k of Object.keys(this.obj)) {
      if (known.includes(k)) continue;
      const kebab = k
        .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
        .replace(/_/g, '-')
        .toLowerCase();
      const hint = kebab !== k && known.includes(kebab) ? ` (did you mean "${kebab}"?)` : '';
      warnings.push(`${this.where}: unknown key ${JSON.stringify(k)} ignored${hint}`);
    }
  }

  /** A string field; "" and null are unset. */
  str(key: string): string | undefined {
    const v = this.obj[key];
    if (isNull(v)) return undefined;
    let s: string;
    if (v instanceof PlainScalar) s = v.text;
    else if (typeof v === 'string') s = v;
    else if (typeof v === 'number' || typeof v === 'boolean') s = String(v);
    else throw this.fail(key, `want a string, got ${describe(v)}`);
    return s === '' ? undefined : s;
  }

  bool(key: string): boolean | undefined {
    const v = this.obj[key];
    if (isNull(v)) return undefined;
    const text = v instanceof PlainScalar ? v.text : typeof v === 'string' || typeof v === 'boolean' ? String(v) : undefined;
    if (text !== undefined && TRUE_WORDS.has(text)) return true;
    if (text !== undefined && FALSE_WORDS.has(text)) return false;
    throw this.fail(key, `want true or false, got ${text !== undefined ? JSON.stringify(text) : describe(v)}`);
  }

  int(key: string): number | undefined {
    const v = this.obj[key];
    if (isNull(v)) return undefined;
    const text = v instanceof PlainScalar ? v.text : typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
    const n =
      text === undefined ? undefined : v instanceof PlainScalar ? goYamlNumber(text) : /^[+-]?\d+$/.test(text) ? Number(text) : undefined;
    if (n === undefined || !Number.isSafeInteger(n)) {
      throw this.fail(key, `want a whole number, got ${text !== undefined ? JSON.stringify(text) : describe(v)}`);
    }
    return n;
  }

  /** Bytes: a whole number, or one with a unit (`512MB`, `1GiB`; KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024). */
  size(key: string): number | undefined {
    const v = this.obj[key];
    if (isNull(v)) return undefined;
    const text = v instanceof PlainScalar ? v.text : typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
    const m = text === undefined ? null : /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$/i.exec(text);
    if (!m)
      throw this.fail(
        key,
        `want a size such as 1GiB, 500MB or 1048576 (bytes), got ${text !== undefined ? JSON.stringify(text) : describe(v)}`,
      );
    const unit = (m[2] ?? 'B').toLowerCase();
    const scale: Record<string, number> = {
      b: 1,
      kb: 1e3,
      mb: 1e6,
      gb: 1e9,
      tb: 1e12,
      kib: 1024,
      mib: 1024 ** 2,
      gib: 1024 ** 3,
      tib: 1024 ** 4,
    };
    return Math.round(Number(m[1]) * scale[unit]!);
  }

  /** Milliseconds; see durationFromYaml (a bare number other than 0 is rejected). */
  duration(key: string): number | undefined {
    const v = this.obj[key];
    if (isNull(v)) return undefined;
    if (v instanceof PlainScalar) return durationFromYaml(goYamlNumber(v.text) ?? v.text, key, this.where);
    return durationFromYaml(v, key, this.where);
  }

  /** A list of strings (each item read as a string field); null is an empty list. */
  strings(key: string): string[] {
    const v = this.obj[key];
    if (isNull(v)) return [];
    if (!Array.isArray(v)) throw this.fail(key, `want a list, got ${describe(v)}`);
    return (v as unknown[]).map((item, i) => new Fields(this.where, { [`${key}[${i}]`]: item }).str(`${key}[${i}]`) ?? '');
  }

  /** A list (null is empty). */
  list(key: string): unknown[] {
    const v = this.obj[key];
    if (isNull(v)) return [];
    if (!Array.isArray(v)) throw this.fail(key, `want a list, got ${describe(v)}`);
    return v;
  }
}
