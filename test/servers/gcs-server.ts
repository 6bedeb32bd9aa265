/**
 * Google's Cloud Storage emulator (firebase-tools) as a child process on 127.0.0.1 with an OS-assigned
 * port and its own TMPDIR for blobs; see gcs-emulator.cjs for what it adds in front of the emulator.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startChildServer } from './child-server.js';

export interface GcsServer {
  /** `http://127.0.0.1:PORT`: the SDK's apiEndpoint, and (with the scheme) STORAGE_EMULATOR_HOST. */
  endpoint: string;
  stop(): Promise<void>;
}

export interface GcsServerOptions {
  /**
   * Enforce generation preconditions (default true). Off: the emulator as shipped, which ignores them —
   * a stand-in for a store without them, for the lease's start-up probe.
   */
  preconditions?: boolean;
}

export async function startGcsServer(opts: GcsServerOptions = {}): Promise<GcsServer> {
  const blobs = mkdtempSync(join(tmpdir(), 'stn-gcs-'));
  const server = await startChildServer('gcs emulator', [join(import.meta.dirname, 'gcs-emulator.cjs')], /listening on (\d+)/, {
    env: { PATH: process.env.PATH ?? '', TMPDIR: blobs, ...(opts.preconditions === false ? { GCS_EMULATOR_PRECONDITIONS: 'off' } : {}) },
  });
  return {
    endpoint: `http://127.0.0.1:${server.port}`,
    stop: async () => {
      await server.stop();
      rmSync(blobs, { recursive: true, force: true });
    },
  };
}
