/**
 * A test server run as a child process: started, waited for until it prints its port, drained for as
 * long as it runs (some servers crash on a closed pipe), and stopped with SIGTERM, then SIGKILL.
 *
 * Shared by the tests (test/servers re-exports it), the benchmarks and the torture runner, which is why
 * it lives in a compiled directory.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface ChildServer {
  port: number;
  stop: () => Promise<void>;
}

export interface ChildServerOptions {
  env?: NodeJS.ProcessEnv;
  /**
   * Have the kernel SIGKILL the server when its parent dies (util-linux `setpriv --pdeathsig`), so a
   * runner that is itself SIGKILLed leaves no server behind. Only where `setpriv` exists.
   */
  dieWithParent?: boolean;
}

const SETPRIV = '/usr/bin/setpriv';

export async function startChildServer(
  name: string,
  args: string[],
  portLine: RegExp,
  opts: ChildServerOptions = {},
): Promise<ChildServer> {
  const [cmd, argv] =
    opts.dieWithParent && existsSync(SETPRIV)
      ? [SETPRIV, ['--pdeathsig', 'KILL', '--', process.execPath, ...args]]
      : [process.execPath, args];
  const child = spawn(cmd, argv, { ...(opts.env ? { env: opts.env } : {}), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let started = false;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${output}`)), 30_000);
    const onData = (d: Buffer) => {
      if (started) return; // drained, not kept
      output += d.toString();
      const m = portLine.exec(output);
      if (m) {
        clearTimeout(timer);
        started = true;
        output = '';
        resolve(Number(m[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}):\n${output}`)));
  });
  return {
    port,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    },
  };
}
