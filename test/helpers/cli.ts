/** Runs the stn-replicate CLI in process, capturing its output. */
import { spawn } from 'node:child_process';
import { homedir } from 'node:os';
import { Writable } from 'node:stream';
import { main } from '../../src/cli/main.js';
import { cleanEnv, stnReplicateBin } from '../../bench/lib/shared.js';
import { LoggedProcess } from './oracle.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/** `homeDir`: the home directory the CLI is given (default: this user's), e.g. for sftp's ~/.ssh/known_hosts. */
export async function runCli(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; homeDir?: string } = {},
): Promise<CliResult> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(args, {
    stdout,
    stderr,
    env: opts.env ?? {},
    cwd: opts.cwd ?? process.cwd(),
    homeDir: opts.homeDir ?? homedir(),
  });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/** The built binary as a child process (for exit codes and stdio as a user sees them). */
export function runBin(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<CliResult> {
  const bin = stnReplicateBin();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: opts.cwd,
      env: { PATH: process.env.PATH ?? '', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/**
 * The built binary as a long-running child (e.g. `replicate`) whose log lines can be awaited; the
 * environment is minimal (oracleEnv) plus `env`.
 */
export function spawnBin(args: string[], env: Record<string, string> = {}): LoggedProcess {
  const bin = stnReplicateBin();
  return new LoggedProcess('', spawn(process.execPath, [bin, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
}
