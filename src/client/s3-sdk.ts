/**
 * The AWS SDK side of the `s3` backend: loading the SDK, building its S3Clients from the replica's
 * options (endpoint, credentials, checksums, request handler timeouts, retries, the request counter),
 * looking up a bucket's region, and reading the SDK's errors (status, missing key). Separate from the
 * client class (s3-client.ts), which holds what is done with those clients: listings, reads, writes,
 * deletes and the lease.
 */
import { createRequire } from 'node:module';
import type { S3Client } from '@aws-sdk/client-s3';
import { ReplicateError } from '../errors.js';
import { describeCloudError } from './cloud-error.js';
import type { OperationCounter, ReplicaOperation } from './replica-client.js';
import type { S3ReplicaClientOptions } from './s3-client.js';

export type S3Sdk = typeof import('@aws-sdk/client-s3');

/**
 * The SDK is CommonJS: required, not imported. Through import() Node parses every one of its ~30 files
 * a second time to find their exports for ESM (cjs-module-lexer), about 40 ms of a restore's start-up.
 */
const requireHere = createRequire(import.meta.url);
export const loadSdk = () => requireHere('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');
export const loadLibStorage = () => requireHere('@aws-sdk/lib-storage') as typeof import('@aws-sdk/lib-storage');

/**
 * An S3Client for the replica's options. `maxAttempts` 1 is the lease's client: each request sent once
 * (see S3ReplicaClient.leaseSdk). Every operation it sends is counted in `counts`.
 */
export function makeS3Client(
  sdk: S3Sdk,
  o: S3ReplicaClientOptions,
  region: string,
  maxAttempts: number,
  counts: OperationCounter,
): S3Client {
  const s3: S3Client = new sdk.S3Client({
    region,
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    forcePathStyle: o.forcePathStyle ?? o.endpoint !== undefined,
    ...(o.accessKeyId || o.secretAccessKey
      ? { credentials: { accessKeyId: o.accessKeyId ?? '', secretAccessKey: o.secretAccessKey ?? '' } }
      : {}),
    ...(o.checksums === 'when_required' ? { requestChecksumCalculation: 'WHEN_REQUIRED' } : {}),
    // Reads are not checked by the SDK: by default it asks for the object's stored checksum and, on AWS
    // (which stores a CRC64NVME for every new object), hashes the whole body on this thread in
    // JavaScript: ~230 ms per 90 MiB snapshot, 2.5x the time to receive it. What we read is checked
    // end to end already: LZ4 frames carry a content checksum (age, its MACs), WAL frames their
    // checksums, and a restored database its integrity check.
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts,
    // Without these a stalled connection would hang an upload forever.
    requestHandler: {
      connectionTimeout: 5_000,
      socketTimeout: o.requestTimeoutMs ?? 30_000,
      ...(o.skipVerify ? { httpsAgent: { rejectUnauthorized: false } } : {}),
    },
  });
  // Count every operation as it is sent (multipart parts included).
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const op = operationOf(context.commandName);
      if (op) counts.add(op);
      return next(args);
    },
    { step: 'finalizeRequest', name: 'stnRequestCounter' },
  );
  return s3;
}

/**
 * Litestream's rule: a configured region; else, with an endpoint, us-east-1; else ask AWS where the
 * bucket lives (GetBucketLocation against us-east-1; an empty answer means us-east-1).
 */
export async function lookUpRegion(sdk: S3Sdk, o: S3ReplicaClientOptions, counts: OperationCounter): Promise<string> {
  const probe = new sdk.S3Client({
    region: 'us-east-1',
    ...(o.accessKeyId || o.secretAccessKey
      ? { credentials: { accessKeyId: o.accessKeyId ?? '', secretAccessKey: o.secretAccessKey ?? '' } }
      : {}),
  });
  try {
    const out = await probe.send(new sdk.GetBucketLocationCommand({ Bucket: o.bucket }));
    counts.add('GET');
    const c = out.LocationConstraint as string | undefined;
    return !c ? 'us-east-1' : c === 'EU' ? 'eu-west-1' : c;
  } catch (err) {
    throw new ReplicateError(
      'IO',
      `[s3] looking up the region of bucket ${o.bucket}: ${describeCloudError(err)} (set region: in the config)`,
      {
        cause: err,
        details: { bucket: o.bucket },
      },
    );
  } finally {
    probe.destroy();
  }
}

export function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

export function isMissing(err: unknown): boolean {
  const name = (err as { name?: string }).name;
  return name === 'NoSuchKey' || name === 'NotFound' || statusOf(err) === 404;
}

function operationOf(command: string | undefined): ReplicaOperation | undefined {
  if (!command) return undefined;
  if (command.startsWith('List')) return 'LIST';
  if (command.startsWith('Get') || command.startsWith('Head')) return 'GET';
  if (command.startsWith('Delete')) return 'DELETE';
  if (command.startsWith('Put') || command.includes('Multipart') || command.startsWith('UploadPart')) return 'PUT';
  return undefined;
}
