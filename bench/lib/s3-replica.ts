/**
 * A replica in the local S3 server: the config both tools read, and copying a file replica into a
 * bucket (object names unchanged) with a check that every object came back byte for byte.
 *
 * The copy uses the AWS SDK directly rather than our S3 client: the restore benchmark's input should
 * not depend on the code it measures.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { ListObjectsV2Command, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

export interface S3Target {
  endpoint: string;
  bucket: string;
  /** Key prefix of the replica (Litestream's `path`). */
  prefix: string;
}

/** fauxqs accepts any credentials; explicit ones keep both tools off the host's AWS credential chain. */
export const CREDENTIALS = { accessKeyId: 'bench', secretAccessKey: 'bench-secret' };

/** Parts must stay under fauxqs's 11 MiB body limit. */
const PART_BYTES = 8 * 1024 * 1024;

/**
 * The litestream.yml both tools read: one db, one s3 replica on the local server. `replicaExtra` are
 * further replica keys (e.g. `sync-interval: 1s`); everything else stays at its default.
 */
export function s3Config(dbPath: string, t: S3Target, replicaExtra: string[] = []): string {
  return [
    'dbs:',
    `  - path: ${dbPath}`,
    '    replicas:',
    '      - type: s3',
    `        bucket: ${t.bucket}`,
    `        path: ${t.prefix}`,
    `        endpoint: ${t.endpoint}`,
    '        region: us-east-1',
    '        force-path-style: true',
    `        access-key-id: ${CREDENTIALS.accessKeyId}`,
    `        secret-access-key: ${CREDENTIALS.secretAccessKey}`,
    ...replicaExtra.map((l) => `        ${l}`),
    '',
  ].join('\n');
}

function client(endpoint: string): S3Client {
  return new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
}

async function sha256(stream: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of stream) h.update(chunk as Buffer);
  return h.digest('hex');
}

export interface UploadResult {
  objects: number;
  bytes: number;
  seconds: number;
}

/**
 * Copies `files` (paths relative to `dir`, e.g. generations/<gen>/wal/…) to `<prefix>/<path>`, one at a
 * time with streamed multipart uploads, so memory stays at a few parts whatever the object size.
 */
export async function uploadReplica(t: S3Target, dir: string, files: { path: string; bytes: number }[]): Promise<UploadResult> {
  const s3 = client(t.endpoint);
  const t0 = performance.now();
  try {
    for (const f of files) {
      const upload = new Upload({
        client: s3,
        params: { Bucket: t.bucket, Key: `${t.prefix}/${f.path}`, Body: createReadStream(join(dir, f.path)) },
        partSize: PART_BYTES,
        queueSize: 2,
      });
      await upload.done();
    }
  } finally {
    s3.destroy();
  }
  return { objects: files.length, bytes: files.reduce((n, f) => n + f.bytes, 0), seconds: (performance.now() - t0) / 1000 };
}

/**
 * Throws unless the bucket holds exactly `files` under the prefix, each with the local file's size and
 * sha256 (read back with GET, so multipart assembly is checked too, not just the listing).
 */
export async function verifyReplica(t: S3Target, dir: string, files: { path: string; bytes: number }[]): Promise<void> {
  const s3 = client(t.endpoint);
  try {
    const listed = new Map<string, number>();
    let token: string | undefined;
    do {
      const out = await s3.send(new ListObjectsV2Command({ Bucket: t.bucket, Prefix: `${t.prefix}/`, ContinuationToken: token }));
      for (const o of out.Contents ?? []) listed.set(o.Key!, o.Size ?? -1);
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    const want = new Map(files.map((f) => [`${t.prefix}/${f.path}`, f.bytes]));
    for (const [key, bytes] of want)
      if (listed.get(key) !== bytes) throw new Error(`s3://${t.bucket}/${key}: listed size ${listed.get(key)}, file has ${bytes}`);
    for (const key of listed.keys()) if (!want.has(key)) throw new Error(`s3://${t.bucket}/${key}: not in the file replica`);
    for (const f of files) {
      const key = `${t.prefix}/${f.path}`;
      const out = await s3.send(new GetObjectCommand({ Bucket: t.bucket, Key: key }));
      const [remote, local] = await Promise.all([sha256(out.Body as Readable), sha256(createReadStream(join(dir, f.path)))]);
      if (remote !== local) throw new Error(`s3://${t.bucket}/${key}: content differs from ${f.path} (sha256 ${remote} vs ${local})`);
    }
  } finally {
    s3.destroy();
  }
}
