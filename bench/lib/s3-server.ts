/**
 * A local S3 server for the benchmarks: fauxqs, in process, on 127.0.0.1 with an OS-assigned port.
 *
 * The same start-up as the tests' test/servers/s3-server.ts (test/ is not compiled into dist/, and a
 * benchmark should not break when a test helper is refactored), plus hooks that report every request
 * so a benchmark can count what each replicator asks of the store.
 *
 * Conditional writes: fauxqs 1.9 ignores If-None-Match and If-Match on PUT and DELETE (it overwrites),
 * which the lease (src/lease/) depends on; a precondition layer here enforces them against fauxqs's own
 * object store, as Amazon S3 does (412 PreconditionFailed; 404 NoSuchKey for If-Match on a missing key).
 * `conditionalWrites: false` leaves fauxqs as shipped: a stand-in for an S3-compatible store that
 * ignores the conditions, which the lease's start-up probe must catch.
 *
 * Limits to know: fauxqs keeps objects in memory, and its Fastify body limit is 11 MiB per request, so
 * anything larger must go multipart with parts of at most that (both tools use 5 MiB parts; the
 * restore bench's uploader 8 MiB).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { buildApp } from 'fauxqs';
import { findRoot } from './shared.js';
import { classify, type S3Request } from './s3-requests.js';

export interface S3ServerOptions {
  /** Each S3 request as it arrives (before its body is read). */
  onRequest?(r: S3Request): void;
  /** Each S3 request once answered. */
  onResponse?(r: S3Request, status: number): void;
  /**
   * Report `LastModified` in listings to the whole second, as Amazon S3 does (fauxqs reports
   * milliseconds), so that two objects written in the same second tie as they do on S3.
   */
  secondResolution?: boolean;
  /** Enforce If-None-Match / If-Match on PUT and DELETE of an object (default true; see above). */
  conditionalWrites?: boolean;
}

export interface S3Server {
  endpoint: string;
  /** "fauxqs <version>", for the reports. */
  version: string;
  stop(): Promise<void>;
}

/** Paths that are fauxqs's own (health, SQS inspection), not S3 requests. */
const NOT_S3 = /^\/(health|_fauxqs)(\/|$|\?)/;

export async function startS3Server(opts: S3ServerOptions = {}): Promise<S3Server> {
  // The object store is created here (buildApp takes it), so that the precondition layer can read it.
  const s3Store = await newS3Store();
  const app = buildApp({ logger: false, host: '127.0.0.1', defaultRegion: 'us-east-1', stores: { s3Store } } as unknown as Parameters<
    typeof buildApp
  >[0]);
  if (opts.conditionalWrites ?? true) await enforceConditionalWrites(app, s3Store);
  // CompleteMultipartUpload bodies from Go's SDK (Litestream), patched before fauxqs's handler runs:
  // - the ETag quotes are escaped as `&#34;`, which fauxqs does not decode: rewritten to `&quot;`;
  // - the parts come with their elements in either order (`<ETag>` or `<PartNumber>` first) in the same
  //   body, and fauxqs reads only the order it finds first, silently completing the object from a
  //   subset of its parts (a 30 MB snapshot stored as 9 MB): every part is put PartNumber first.
  // The rewrite changes the body's length, so the stream reports the bytes received (Fastify's
  // `receivedEncodedLength`), or Fastify would answer 400 "Request body size did not match
  // Content-Length". The body (a short list of parts) is rewritten whole, never chunk by chunk.
  app.addHook('preParsing', async (request, _reply, payload) => {
    if (request.method !== 'POST' || !String(request.url).includes('uploadId=')) return payload;
    const chunks: Buffer[] = [];
    const rewritten = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        (rewritten as Transform & { receivedEncodedLength: number }).receivedEncodedLength += chunk.length;
        cb();
      },
      flush(cb) {
        const body = Buffer.concat(chunks)
          .toString('latin1')
          .replaceAll('&#34;', '&quot;')
          .replace(
            /<Part>\s*<ETag>([^<]*)<\/ETag>\s*<PartNumber>(\d+)<\/PartNumber>\s*<\/Part>/g,
            '<Part><PartNumber>$2</PartNumber><ETag>$1</ETag></Part>',
          );
        cb(null, Buffer.from(body, 'latin1'));
      },
    });
    (rewritten as Transform & { receivedEncodedLength: number }).receivedEncodedLength = 0;
    return payload.pipe(rewritten);
  });
  if (opts.onRequest || opts.onResponse) {
    // Classified once on arrival; the answer's hook sees the same object.
    const seen = new WeakMap<object, S3Request>();
    app.addHook('onRequest', async (request) => {
      if (NOT_S3.test(request.url)) return;
      const r = classify(request.method, request.url);
      seen.set(request, r);
      opts.onRequest?.(r);
    });
    app.addHook('onResponse', async (request, reply) => {
      const r = seen.get(request);
      if (r) opts.onResponse?.(r, reply.statusCode);
    });
  }
  if (opts.secondResolution) {
    app.addHook('onSend', async (_request, _reply, payload) =>
      typeof payload === 'string' ? payload.replace(/(<LastModified>[^<.]*)\.\d+Z</g, '$1.000Z<') : payload,
    );
  }
  // buildApp() listens wherever it is told; fauxqs's startFauxqs() would bind 0.0.0.0, so it is not used.
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('fauxqs did not report a port');
  return { endpoint: `http://127.0.0.1:${address.port}`, version: `fauxqs ${fauxqsVersion()}`, stop: () => app.close() };
}

/** fauxqs's object store: objects by key, per bucket (what its S3 routes read and write). */
interface FauxqsS3Store {
  buckets: Map<string, Map<string, { etag: string }>>;
}

interface FauxqsS3Error {
  statusCode: number;
  toXml(): string;
}

/**
 * fauxqs's package directory, found as Node finds packages: in the nearest node_modules above the
 * repository root that has it (the Node 24 run of scripts/test-on-node.sh runs from a directory under
 * .cache/ whose own node_modules holds only rebuilt addons, the rest coming from the repository's).
 */
function fauxqsDir(): string {
  for (let dir = findRoot(); ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', 'fauxqs');
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) throw new Error('cannot find the fauxqs package in any node_modules above the repository');
  }
}

/** fauxqs's modules outside its package exports (S3Store, S3Error), by file. */
async function fauxqsModule<T>(rel: string): Promise<T> {
  return (await import(pathToFileURL(join(fauxqsDir(), 'dist', rel)).href)) as T;
}

async function newS3Store(): Promise<FauxqsS3Store> {
  const { S3Store } = await fauxqsModule<{ S3Store: new () => FauxqsS3Store }>('s3/s3Store.js');
  return new S3Store();
}

/**
 * Checks If-None-Match / If-Match of an object PUT or DELETE against the stored ETag, before fauxqs's
 * handler runs. Atomic: the hook calls `done()` synchronously, Fastify then runs the route handler in
 * the same tick, and fauxqs's object handlers write to the store without awaiting anything, so no
 * other request can come between the check and the write (measured: of 20 concurrent conditional
 * writers on one key, exactly one wins). Conditions on copies and multipart parts are not checked
 * (nothing here sends them); If-None-Match with an ETag (not `*`) is refused with 501.
 */
async function enforceConditionalWrites(app: ReturnType<typeof buildApp>, store: FauxqsS3Store): Promise<void> {
  const { S3Error } = await fauxqsModule<{ S3Error: new (code: string, message: string, status: number) => FauxqsS3Error }>(
    'common/errors.js',
  );
  const failed = () => new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', 412);
  const bare = (etag: string) => etag.replace(/^W\//, '').replace(/^"|"$/g, '');
  app.addHook('preHandler', (request, reply, done) => {
    const inm = request.headers['if-none-match'];
    const im = request.headers['if-match'];
    if ((request.method !== 'PUT' && request.method !== 'DELETE') || (inm === undefined && im === undefined)) return done();
    if (request.headers['x-amz-copy-source'] !== undefined || String(request.url).includes('uploadId=')) return done();
    const params = request.params as { bucket?: string; '*'?: string };
    const objects = params.bucket !== undefined ? store.buckets.get(params.bucket) : undefined;
    const key = params['*'];
    if (!objects || !key) return done();
    const current = objects.get(key);
    const fail = (e: FauxqsS3Error) => void reply.header('content-type', 'application/xml').status(e.statusCode).send(e.toXml());
    if (inm !== undefined) {
      if (request.method === 'DELETE' || inm !== '*')
        return fail(new S3Error('NotImplemented', 'A header you provided implies functionality that is not implemented', 501));
      if (current) return fail(failed());
    }
    if (im !== undefined) {
      if (!current) return fail(new S3Error('NoSuchKey', 'The specified key does not exist.', 404));
      if (im !== '*' && bare(String(im)) !== bare(current.etag)) return fail(failed());
    }
    done();
  });
}

/** Creates a bucket (fauxqs accepts a plain PUT /<bucket>). */
export async function createBucket(endpoint: string, bucket: string): Promise<void> {
  const res = await fetch(`${endpoint}/${bucket}`, { method: 'PUT' });
  if (!res.ok && res.status !== 409) throw new Error(`creating bucket ${bucket}: HTTP ${res.status} ${await res.text()}`);
}

/** The installed fauxqs version, from its package.json under the repository's node_modules. */
function fauxqsVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(fauxqsDir(), 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Deletes every object of a bucket, then the bucket (fauxqs keeps objects in memory until then). */
export async function deleteBucket(endpoint: string, bucket: string): Promise<void> {
  const { S3Client, ListObjectsV2Command, DeleteObjectsCommand, DeleteBucketCommand } = await import('@aws-sdk/client-s3');
  const s3 = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'test-key', secretAccessKey: 'test-secret' },
  });
  try {
    for (;;) {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1000 }));
      const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
      if (keys.length === 0) break;
      await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
    }
    await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
  } finally {
    s3.destroy();
  }
}
