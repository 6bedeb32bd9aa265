/**
 * Google's Cloud Storage emulator (firebase-tools) as a child process on 127.0.0.1 with an OS-assigned
 * port and its own TMPDIR for blobs; see gcs-emulator.cjs for what it adds in front of the emulator.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface GcsServer {
  /** `http://127.0.0.1:PORT`: the SDK's apiEndpoint, and (with the scheme) STORAGE_EMULATOR_HOST. */
  endpoint: string;
  stop(): Promise<void>;
}

export async function startGcsServer(): Promise<GcsServer> {
  const blobs = mkdtempSync(join(tmpdir(), 'stn-gcs-'));
  const child = spawn(process.execPath, [join(import.meta.dirname, 'gcs-emulator.cjs')], {
    env: { PATH: process.env.PATH ?? '', TMPDIR: blobs },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gcs emulator did not start:\n${output}`)), 30_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      const m = /listening on (\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`gcs emulator exited (${code}):\n${output}`)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
      rmSync(blobs, { recursive: true, force: true });
    },
  };
}
