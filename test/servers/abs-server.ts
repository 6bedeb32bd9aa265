/**
 * Azurite (Microsoft's Azure Storage emulator), blob service only, as a child process on 127.0.0.1 with
 * an OS-assigned port, in memory. Its output is drained for as long as it runs (it writes at shutdown,
 * and a closed pipe would crash it).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { startChildServer } from './child-server.js';

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
  const server = await startChildServer(
    'azurite',
    [bin, '--blobHost', '127.0.0.1', '--blobPort', '0', '--inMemoryPersistence', '--skipApiVersionCheck', '--disableTelemetry', '--loose'],
    /listens on http:\/\/127\.0\.0\.1:(\d+)/,
  );
  return { endpoint: `http://127.0.0.1:${server.port}/${AZURITE_ACCOUNT}`, stop: server.stop };
}

/** Creates a container (Litestream does not create it either). */
export async function createContainer(endpoint: string, name: string): Promise<void> {
  const { BlobServiceClient, StorageSharedKeyCredential } = await import('@azure/storage-blob');
  const svc = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
  await svc.getContainerClient(name).createIfNotExists();
}
