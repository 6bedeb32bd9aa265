/**
 * A real S3 protocol server for the tests: fauxqs, in process, on 127.0.0.1 with an OS-assigned port.
 * Two gaps are patched at start-up (see shared test-infra notes):
 * - Go's SDK (Litestream) escapes the ETag quotes in CompleteMultipartUpload bodies as `&#34;`, which
 *   fauxqs does not decode: rewritten to `&quot;` before its handler runs;
 * - buildApp() listens wherever it is told; startFauxqs() would bind 0.0.0.0, so it is not used.
 */
import { Transform } from 'node:stream';
import { buildApp } from 'fauxqs';

export interface S3Server {
  endpoint: string;
  stop(): Promise<void>;
}

export async function startS3Server(): Promise<S3Server> {
  const app = buildApp({ logger: false, host: '127.0.0.1', defaultRegion: 'us-east-1' });
  app.addHook('preParsing', async (request, _reply, payload) => {
    if (request.method !== 'POST' || !String(request.url).includes('uploadId=')) return payload;
    return payload.pipe(
      new Transform({
        transform(chunk: Buffer, _enc, cb) {
          cb(null, Buffer.from(chunk.toString('latin1').replaceAll('&#34;', '&quot;'), 'latin1'));
        },
      }),
    );
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('fauxqs did not report a port');
  return { endpoint: `http://127.0.0.1:${address.port}`, stop: () => app.close() };
}

/** Creates a bucket (fauxqs accepts a plain PUT /<bucket>). */
export async function createBucket(endpoint: string, bucket: string): Promise<void> {
  const res = await fetch(`${endpoint}/${bucket}`, { method: 'PUT' });
  if (!res.ok && res.status !== 409) throw new Error(`creating bucket ${bucket}: HTTP ${res.status} ${await res.text()}`);
}
