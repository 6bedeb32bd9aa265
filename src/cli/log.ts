/**
 * The CLI's logger: Litestream's formats — text (`time=… level=INFO msg="…" key=value`, logfmt) or JSON
 * lines — filtered by level, to stdout or stderr. The library only sees the Logger interface.
 */
import type { LogFields, Logger } from '../logger.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export interface CliLoggerOptions {
  level: LogLevel;
  type: 'text' | 'json';
  stream: NodeJS.WritableStream;
  now?: () => Date;
}

function logfmtValue(v: unknown): string {
  const s = v instanceof Error ? v.message : typeof v === 'string' ? v : JSON.stringify(v);
  return /^[^\s"=]+$/.test(s) ? s : JSON.stringify(s);
}

export function createCliLogger(opts: CliLoggerOptions): Logger {
  const now = opts.now ?? (() => new Date());
  const emit = (level: LogLevel, msg: string, fields: LogFields = {}) => {
    if (RANK[level] < RANK[opts.level]) return;
    const time = now().toISOString();
    if (opts.type === 'json') {
      opts.stream.write(`${JSON.stringify({ time, level: level.toUpperCase(), msg, ...fields })}\n`);
      return;
    }
    const kv = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => ` ${k}=${logfmtValue(v)}`)
      .join('');
    opts.stream.write(`time=${time} level=${level.toUpperCase()} msg=${logfmtValue(msg)}${kv}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
