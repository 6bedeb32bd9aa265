/**
 * A test server run as a child process: started, waited for until it prints its port, drained for as
 * long as it runs (some servers crash on a closed pipe), and stopped with SIGTERM, then SIGKILL.
 */
import { spawn } from 'node:child_process';

export interface ChildServer {
  port: number;
  stop(): Promise<void>;
}

export async function startChildServer(name: string, args: string[], portLine: RegExp, env?: NodeJS.ProcessEnv): Promise<ChildServer> {
  const child = spawn(process.execPath, args, { ...(env ? { env } : {}), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${output}`)), 30_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      const m = portLine.exec(output);
      if (m) {
        clearTimeout(timer);
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
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    },
  };
}
