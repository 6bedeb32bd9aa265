/**
 * Carrying a replica client into the replication worker thread: a client object cannot cross a thread
 * boundary, so a built-in one is described as plain data (its type and constructor options) and rebuilt
 * in the worker. Anything else — a custom ReplicaClient, a subclass of a built-in one, an instance with a
 * method replaced — cannot be rebuilt faithfully, and the replication runs in-process instead.
 *
 * The description may hold credentials (S3 keys, the Azure account key, an sftp password): it travels in
 * the worker's `workerData`, in memory only, and is never logged or put in an error.
 */
import { AbsReplicaClient, type AbsReplicaClientOptions } from '../client/abs-client.js';
import { FileReplicaClient, type FileReplicaClientOptions } from '../client/file-client.js';
import { GcsReplicaClient, type GcsReplicaClientOptions } from '../client/gcs-client.js';
import { CLIENT_TRANSFER, type ClientTransfer, type OperationCounter, type ReplicaClient } from '../client/replica-client.js';
import { S3ReplicaClient, type S3ReplicaClientOptions } from '../client/s3-client.js';
import { SftpReplicaClient, type SftpReplicaClientOptions } from '../client/sftp-client.js';

export type ClientDescription =
  | { type: 'file'; options: FileReplicaClientOptions }
  | { type: 's3'; options: S3ReplicaClientOptions }
  | { type: 'gcs'; options: GcsReplicaClientOptions }
  | { type: 'abs'; options: AbsReplicaClientOptions }
  | { type: 'sftp'; options: SftpReplicaClientOptions };

const BUILT_IN = [
  ['file', FileReplicaClient],
  ['s3', S3ReplicaClient],
  ['gcs', GcsReplicaClient],
  ['abs', AbsReplicaClient],
  ['sftp', SftpReplicaClient],
] as const;

/**
 * The description of `client` and its request counter, or undefined when it is not exactly a built-in
 * client: the worker would rebuild the base class and silently drop a subclass's overrides or a method
 * assigned to the instance (tests inject faults that way).
 */
export function describeClient(client: ReplicaClient): { description: ClientDescription; counter: OperationCounter } | undefined {
  const entry = BUILT_IN.find(([, cls]) => Object.getPrototypeOf(client) === cls.prototype);
  if (!entry) return undefined;
  const proto = entry[1].prototype as unknown as Record<string, unknown>;
  const own = client as unknown as Record<string, unknown>;
  if (Object.getOwnPropertyNames(client).some((k) => typeof own[k] === 'function' && typeof proto[k] === 'function')) return undefined;
  const t = (client as unknown as { [CLIENT_TRANSFER](): ClientTransfer })[CLIENT_TRANSFER]();
  return { description: { type: entry[0], options: t.options } as ClientDescription, counter: t.counter };
}

/** Builds the client a description stands for (in the worker). */
export function clientFromDescription(d: ClientDescription): ReplicaClient {
  switch (d.type) {
    case 'file':
      return new FileReplicaClient(d.options);
    case 's3':
      return new S3ReplicaClient(d.options);
    case 'gcs':
      return new GcsReplicaClient(d.options);
    case 'abs':
      return new AbsReplicaClient(d.options);
    case 'sftp':
      return new SftpReplicaClient(d.options);
  }
}
