/**
 * The replica's store for one round, and its outages: a file replica (made unwritable with
 * `chattr +i` as root, or read-only modes otherwise), the S3 server or Azurite (behind a fault proxy
 * that drops connections or answers 500/503). The replicator talks to the store through the proxy; the
 * harness's restores and listings go to the server directly, so they never see the fault.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AZURITE_ACCOUNT, AZURITE_KEY, createContainer, deleteContainer } from '../bench/lib/abs-server.js';
import { startFaultProxy, type FaultMode, type FaultProxy } from '../bench/lib/fault-proxy.js';
import { createBucket, deleteBucket } from '../bench/lib/s3-server.js';

export const BACKENDS = ['file', 's3', 'abs'] as const;
export type Backend = (typeof BACKENDS)[number];

export interface Servers {
  s3Endpoint?: string;
  absEndpoint?: string;
}

export interface Store {
  backend: Backend;
  /** Replica keys for the replicator's config (through the fault proxy for cloud stores). */
  replicaLines: string[];
  /** Replica keys for the harness's restores and listings (straight to the store). */
  restoreLines: string[];
  /** The store's object timestamps have 1-second resolution (S3 LastModified, Azure CreationTime). */
  coarseTimestamps: boolean;
  /** Starts an outage; returns what it did, for the report. */
  beginOutage(pick: <T>(items: readonly T[]) => T): Promise<string>;
  endOutage(): Promise<void>;
  /** Deletes the round's objects (cloud servers keep them in memory) and closes the proxy. */
  dispose(deleteObjects: boolean): Promise<void>;
}

const CLOUD_FAULTS: readonly FaultMode[] = ['drop', 'error500', 'error503'];

export async function openStore(backend: Backend, roundDir: string, name: string, servers: Servers, asRoot: boolean): Promise<Store> {
  if (backend === 'file') return fileStore(join(roundDir, 'replica'), asRoot);
  const endpoint = backend === 's3' ? servers.s3Endpoint : servers.absEndpoint;
  if (!endpoint) throw new Error(`no ${backend} server given for a ${backend} round`);
  const bucket = name
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 63);
  const proxy = await startFaultProxy(backend === 's3' ? endpoint : new URL(endpoint).origin);
  const viaProxy = backend === 's3' ? proxy.endpoint : `${proxy.endpoint}/${AZURITE_ACCOUNT}`;
  const keys = (ep: string) =>
    backend === 's3'
      ? [
          'type: s3',
          `bucket: ${bucket}`,
          'path: db',
          `endpoint: ${ep}`,
          'region: us-east-1',
          'force-path-style: true',
          'access-key-id: torture',
          'secret-access-key: torture',
        ]
      : [
          'type: abs',
          `account-name: ${AZURITE_ACCOUNT}`,
          `account-key: ${AZURITE_KEY}`,
          `endpoint: ${ep}`,
          `bucket: ${bucket}`,
          'path: db',
        ];
  if (backend === 's3') await createBucket(endpoint, bucket);
  else await createContainer(endpoint, bucket);
  return cloudStore(backend, proxy, keys(viaProxy), keys(endpoint), async () => {
    if (backend === 's3') await deleteBucket(endpoint, bucket);
    else await deleteContainer(endpoint, bucket);
  });
}

function cloudStore(backend: Backend, proxy: FaultProxy, replicaLines: string[], restoreLines: string[], drop: () => Promise<void>): Store {
  return {
    backend,
    replicaLines,
    restoreLines,
    coarseTimestamps: true,
    beginOutage: async (pick) => {
      proxy.mode = pick(CLOUD_FAULTS);
      return `${backend} proxy ${proxy.mode}`;
    },
    endOutage: async () => {
      proxy.mode = 'pass';
    },
    dispose: async (deleteObjects) => {
      proxy.mode = 'pass';
      await proxy.close();
      if (deleteObjects) await drop().catch(() => undefined);
    },
  };
}

function directories(root: string): string[] {
  const out = [root];
  for (const e of readdirSync(root, { withFileTypes: true })) if (e.isDirectory()) out.push(...directories(join(root, e.name)));
  return out;
}

function fileStore(replicaDir: string, asRoot: boolean): Store {
  mkdirSync(replicaDir, { recursive: true });
  let locked: string[] = [];
  const unlock = () => {
    for (const d of locked.reverse()) {
      try {
        if (asRoot) execFileSync('chattr', ['-i', d]);
        else execFileSync('chmod', ['0755', d]);
      } catch {
        // a directory that is gone needs no unlocking
      }
    }
    locked = [];
  };
  return {
    backend: 'file',
    replicaLines: ['type: file', `path: ${replicaDir}`],
    restoreLines: ['type: file', `path: ${replicaDir}`],
    coarseTimestamps: false,
    beginOutage: async () => {
      // Every directory of the replica: no new file, rename or delete anywhere in it. Root ignores
      // modes, so as root the immutable attribute does it (as in test/integration/replicate-faults).
      for (const d of directories(replicaDir).filter((p) => statSync(p).isDirectory())) {
        if (asRoot) execFileSync('chattr', ['+i', d]);
        else execFileSync('chmod', ['0555', d]);
        locked.push(d);
      }
      return `file replica ${asRoot ? 'immutable' : 'read-only'} (${locked.length} dirs)`;
    },
    endOutage: async () => unlock(),
    dispose: async () => unlock(),
  };
}
