/**
 * Helpers shared by the tests (test/), the benchmarks (bench/) and the torture runner (torture/): the
 * repository root, the Litestream binary, the environment a child process gets, the resource timer, a
 * text table and a child's output split into lines.
 *
 * It lives in bench/lib because that is compiled into dist/ (the benchmarks and the torture runner run
 * from there) while the tests import it from source through vitest; test/ is not compiled.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest directory above this file with the project's package.json and CLI. */
export function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'bin', 'stn-replicate.js'))) {
    if (dirname(dir) === dir) throw new Error('cannot find the stn-replicate repository root');
    dir = dirname(dir);
  }
  return dir;
}

/** Our CLI's entry point (run it with `process.execPath`; it loads dist/, so `npm run build` first). */
export function stnReplicateBin(): string {
  return join(findRoot(), 'bin', 'stn-replicate.js');
}

/** The real Litestream v0.3.13 binary (devDependency @flydotio/litestream-linux-x64). */
export function litestreamBin(): string {
  const pkg = createRequire(import.meta.url).resolve('@flydotio/litestream-linux-x64/package.json');
  return join(dirname(pkg), 'litestream');
}

/** What `litestream version` prints, for the benchmarks' reports. */
export function litestreamVersion(): string {
  const r = spawnSync(litestreamBin(), ['version'], { encoding: 'utf8', env: cleanEnv() });
  return (r.stdout || r.stderr || '').trim();
}

/**
 * The environment for a child process (Litestream, our CLI, a test app): PATH and HOME only, plus
 * `extra`. Nothing else is inherited, so no AWS_*, LITESTREAM_* or cloud credentials from the host can
 * change what a child reads or writes, and both tools see identical settings. `cleanEnv({ LANG: 'C' })`
 * also fixes the locale, for output that is compared as text.
 */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...extra };
}

/** How a benchmark measures a child from outside: GNU time, or Python's resource module. */
export type Timer = 'gnu-time' | 'python';

/** `--timer auto|gnu-time|python`: auto is GNU time where /usr/bin/time is installed. */
export function pickTimer(wanted: string | undefined): Timer {
  if (wanted === 'python' || wanted === 'gnu-time') return wanted;
  if (wanted !== undefined && wanted !== 'auto') throw new Error(`--timer must be auto, gnu-time or python, not ${wanted}`);
  return existsSync('/usr/bin/time') ? 'gnu-time' : 'python';
}

/** The median of `xs` (NaN when empty). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A plain-text table, indented two spaces: the first column left-aligned, the others right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].map((l) => `  ${l}`).join('\n');
}

/**
 * Calls `onLine` with each line `stream` emits (without its newline), as it arrives. Each stream keeps
 * its own partial line, so stdout and stderr of one child never mix within a line; a last line without
 * a newline is passed on when the stream ends. UTF-8 characters split across chunks are decoded whole.
 */
export function onLines(stream: Readable | null | undefined, onLine: (line: string) => void): void {
  if (!stream) return;
  const decoder = new StringDecoder('utf8');
  let buf = '';
  stream.on('data', (d: Buffer | string) => {
    buf += typeof d === 'string' ? d : decoder.write(d);
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      onLine(line);
    }
  });
  stream.on('end', () => {
    buf += decoder.end();
    if (buf !== '') onLine(buf);
    buf = '';
  });
}
