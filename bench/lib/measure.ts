/**
 * Wall time and peak RSS of one child process, measured from outside by a public tool so that our
 * Node CLI and Litestream's Go binary are measured the same way (neither reports on itself).
 *
 * GNU time (`/usr/bin/time -f '%e %M'`) when installed; otherwise Python's
 * resource.getrusage(RUSAGE_CHILDREN), which on Linux reports the same wait4() figures.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Timer } from './shared.js';

export interface Sample {
  seconds: number;
  rssMiB: number;
}

export interface Command {
  cmd: string;
  args: string[];
}

// Wall time around subprocess.run; RUSAGE_CHILDREN's ru_maxrss is the largest (here: only) child, in KiB.
const PY = [
  'import resource, subprocess, sys, time',
  't = time.monotonic()',
  'code = subprocess.run(sys.argv[2:]).returncode',
  'wall = time.monotonic() - t',
  "open(sys.argv[1], 'w').write('%.3f %d\\n' % (wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))",
  'sys.exit(code)',
].join('\n');

/**
 * Runs `c` to completion under the timer. The figures go to a file of their own (`time -o`), not to
 * stderr where they could mix with the child's output. Throws with the child's stderr if it fails.
 */
export function measure(timer: Timer, c: Command, env: Record<string, string>): Sample {
  const dir = mkdtempSync(join(tmpdir(), 'stn-bench-'));
  const out = join(dir, 'time');
  try {
    const r =
      timer === 'gnu-time'
        ? spawnSync('/usr/bin/time', ['-f', '%e %M', '-o', out, c.cmd, ...c.args], { env, encoding: 'utf8', maxBuffer: 64 << 20 })
        : spawnSync('python3', ['-c', PY, out, c.cmd, ...c.args], { env, encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`${[c.cmd, ...c.args].join(' ')} exited with ${r.status}:\n${r.stderr}${r.stdout}`);
    // GNU time prefixes a note when the command fails or is signalled; the figures are the last line.
    const [seconds, kib] = readFileSync(out, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
    if (!Number.isFinite(seconds) || !Number.isFinite(kib)) throw new Error(`unreadable ${timer} output for ${c.cmd}`);
    return { seconds: seconds!, rssMiB: kib! / 1024 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs a command untimed (warm-ups, `sync`); throws with its stderr if it fails. */
export function run(c: Command, env: Record<string, string>): void {
  const r = spawnSync(c.cmd, c.args, { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${[c.cmd, ...c.args].join(' ')} exited with ${r.status}:\n${r.stderr}${r.stdout}`);
}
