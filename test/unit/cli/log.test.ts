import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createCliLogger, type LogLevel } from '../../../src/cli/log.js';

const NOW = new Date('2026-11-28T21:33:27.9Z');

function capture(type: 'text' | 'json', level: LogLevel = 'debug') {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  const log = createCliLogger({ level, type, stream, now: () => NOW });
  return { log, lines: () => text.split('\n').slice(0, -1), text: () => text };
}

describe('CLI logger', () => {
  it('writes JSON lines: time (RFC 3339, UTC, milliseconds), level, msg first, then the fields with their JSON types', () => {
    const c = capture('json');
    c.log.info('snapshot written', { replica: 'file', position: '0a851050c2809a8a/00000000:4152', sz: 363, skipped: undefined });
    c.log.error('replica sync failed', { replica: 's3', error: 'writing x: "quoted" = y' });
    expect(c.text()).toBe(
      '{"time":"2026-11-28T21:33:27.900Z","level":"INFO","msg":"snapshot written","replica":"file","position":"0a851050c2809a8a/00000000:4152","sz":363}\n' +
        '{"time":"2026-11-28T21:33:27.900Z","level":"ERROR","msg":"replica sync failed","replica":"s3","error":"writing x: \\"quoted\\" = y"}\n',
    );
    for (const line of c.lines()) expect(Object.keys(JSON.parse(line) as object).slice(0, 3)).toEqual(['time', 'level', 'msg']);
  });

  it("writes Litestream's text format: logfmt, values quoted only when they must be", () => {
    const c = capture('text');
    c.log.warn('shadow wal is growing: replicas are behind', { bytes: 1024, behind: 'file (/backups/a b)', gone: undefined, ok: true });
    c.log.debug('checkpoint', { mode: 'PASSIVE', detail: { log: 3 }, eq: 'a=b' });
    expect(c.lines()).toEqual([
      'time=2026-11-28T21:33:27.900Z level=WARN msg="shadow wal is growing: replicas are behind" bytes=1024 behind="file (/backups/a b)" ok=true',
      'time=2026-11-28T21:33:27.900Z level=DEBUG msg=checkpoint mode=PASSIVE detail="{\\"log\\":3}" eq="a=b"',
    ]);
  });

  it('drops what is below the configured level', () => {
    const seen = (level: LogLevel) => {
      const c = capture('json', level);
      c.log.debug('d');
      c.log.info('i');
      c.log.warn('w');
      c.log.error('e');
      return c.lines().map((l) => (JSON.parse(l) as { level: string }).level);
    };
    expect(seen('debug')).toEqual(['DEBUG', 'INFO', 'WARN', 'ERROR']);
    expect(seen('info')).toEqual(['INFO', 'WARN', 'ERROR']);
    expect(seen('warn')).toEqual(['WARN', 'ERROR']);
    expect(seen('error')).toEqual(['ERROR']);
  });
});
