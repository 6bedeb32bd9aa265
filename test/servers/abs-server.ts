/**
 * Azurite (Microsoft's Azure Storage emulator), blob service only, as a child process on 127.0.0.1 with
 * an OS-assigned port, in memory. Its output is drained for as long as it runs (it writes at shutdown,
 * and a closed pipe would crash it).
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** Azurite's publicly documented development account. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AbsServer {
  /** Blob endpoint including the account segment (path style). */
  endpoint: string;
  stop(): Promise<void>;
}

export async function startAbsServer(): Promise<AbsServer> {
  const pkg = createRequire(import.meta.url).resolve('azurite/package.json');
  const bin = join(dirname(pkg), 'dist', 'src', 'blob', 'main.js');
  const child = spawn(
    process.execPath,
    [bin, '--blobHost', '127.0.0.1', '--blobPort', '0', '--inMemoryPersistence', '--skipApiVersionCheck', '--disableTelemetry', '--loose'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`azurite did not start:\n${output}`)), 30_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      const m = /listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`azurite exited (${code}):\n${output}`)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/** Creates a container (Litestream does not create it either). */
export async function createContainer(endpoint: string, name: string): Promise<void> {
  const { BlobServiceClient, StorageSharedKeyCredential } = await import('@azure/storage-blob');
  const svc = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
  await svc.getContainerClient(name).createIfNotExists();
}
