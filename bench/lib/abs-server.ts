/**
 * Azurite (Microsoft's Azure Storage emulator), blob service only, as a child process on 127.0.0.1 with
 * an OS-assigned port, in memory. Its output is drained for as long as it runs (it writes at shutdown,
 * and a closed pipe would crash it).
 *
 * One implementation for the tests (test/servers/abs-server.ts re-exports it) and the torture runner;
 * it lives here because test/ is not compiled into dist/.
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
  stop: () => Promise<void>;
}

export interface AbsServerOptions {
  /** SIGKILL Azurite when the starting process dies (see ChildServerOptions.dieWithParent). */
  dieWithParent?: boolean;
}

export async function startAbsServer(opts: AbsServerOptions = {}): Promise<AbsServer> {
  const pkg = createRequire(import.meta.url).resolve('azurite/package.json');
  const bin = join(dirname(pkg), 'dist', 'src', 'blob', 'main.js');
  const server = await startChildServer(
    'azurite',
    [bin, '--blobHost', '127.0.0.1', '--blobPort', '0', '--inMemoryPersistence', '--skipApiVersionCheck', '--disableTelemetry', '--loose'],
    /listens on http:\/\/127\.0\.0\.1:(\d+)/,
    { dieWithParent: opts.dieWithParent ?? false },
  );
  return { endpoint: `http://127.0.0.1:${server.port}/${AZURITE_ACCOUNT}`, stop: server.stop };
}

async function containerClient(endpoint: string, name: string) {
  const { BlobServiceClient, StorageSharedKeyCredential } = await import('@azure/storage-blob');
  const svc = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
  return svc.getContainerClient(name);
}

/** Creates a container (Litestream does not create it either). */
export async function createContainer(endpoint: string, name: string): Promise<void> {
  await (await containerClient(endpoint, name)).createIfNotExists();
}

/** Deletes a container and every blob in it (Azurite keeps blobs in memory until then). */
export async function deleteContainer(endpoint: string, name: string): Promise<void> {
  await (await containerClient(endpoint, name)).deleteIfExists();
}
