/**
 * The lease's conditional PutObject without the SDK's middleware stack: signed with the client's own
 * SigV4 signer and sent through its own request handler (its agents, TLS settings and timeouts).
 *
 * Why: a replica renews its lease every TTL/3 (10 s by default), for as long as it replicates. Through
 * the SDK each renewal cost ~3 ms of CPU (middleware, endpoint rules, checksums, user agent), which for
 * 20 idle databases was two thirds of the replicator's idle CPU; the same request signed and sent
 * here costs under 1 ms (see docs/performance.md).
 *
 * Only what the SDK itself sent is replayed: the first lease write of a client goes through the SDK,
 * which resolves the endpoint (path or virtual-hosted style, custom endpoints) and signs it; a
 * middleware records where it went (scheme, host, port, path) and with what signature scope. A request
 * that was not plain SigV4 for `s3` (S3 Express sessions, SigV4a, an access point's other signing
 * name) records nothing, and the lease keeps the SDK's path. Credentials come from the SDK's own
 * provider (cached and refreshed by it), and the SDK's clock-skew correction applies.
 */
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';

/** Where the SDK sent the lease object's PutObject, and the scope it signed for. */
export interface LeaseTarget {
  protocol: string;
  hostname: string;
  port: number | undefined;
  /** The request path as the SDK encoded it (also the canonical URI: S3 paths are not re-encoded). */
  path: string;
  /** The Host header the SDK signed. */
  host: string;
  region: string;
}

/** A store's answer to a conditional put sent here: the status, and the ETag or the error it gave. */
export interface LeasePutAnswer {
  status: number;
  etag: string | undefined;
  /** The S3 error code and message (from the XML body), for a status other than 2xx. */
  code: string | undefined;
  message: string | undefined;
}

/** S3 SigV4 with the standard signing name (the only kind replayed here). */
const SIGV4_S3 = /^AWS4-HMAC-SHA256 Credential=[^/]+\/\d{8}\/([^/]+)\/s3\/aws4_request,/;

/**
 * Records, on `s3`, where the SDK sends a PutObject of `key` (see the file comment); `onTarget` is
 * called with it once a request of that key went out signed with plain SigV4 for s3.
 */
export function recordLeaseTarget(s3: S3Client, key: string, onTarget: (t: LeaseTarget) => void): void {
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      // The deserialize step runs last before the request is sent: the request is final and signed.
      const input = args.input as { Key?: unknown };
      const target = context.commandName === 'PutObjectCommand' && input.Key === key ? signedTarget(args.request) : undefined;
      if (target) onTarget(target);
      return next(args);
    },
    { step: 'deserialize', name: 'stnLeaseTarget' },
  );
}

/**
 * Where a request the SDK is about to send goes, and the scope it is signed for; undefined unless it is
 * plain SigV4 for s3 (see the file comment). Called in the deserialize step, when the request is final.
 */
export function signedTarget(request: unknown): LeaseTarget | undefined {
  const req = request as {
    protocol?: string;
    hostname?: string;
    port?: number;
    path?: string;
    headers?: Record<string, string>;
  };
  const auth = req.headers?.authorization ?? req.headers?.Authorization;
  const scope = typeof auth === 'string' ? SIGV4_S3.exec(auth) : null;
  const host = req.headers?.host ?? req.headers?.Host;
  if (!scope || !req.protocol || !req.hostname || !req.path || !host || hasSessionToken(req.headers)) return undefined;
  return { protocol: req.protocol, hostname: req.hostname, port: req.port, path: req.path, host, region: scope[1]! };
}

/** An S3 Express session (its own token header): not replayed. */
function hasSessionToken(headers: Record<string, string> | undefined): boolean {
  return headers !== undefined && Object.keys(headers).some((h) => h.toLowerCase() === 'x-amz-s3session-token');
}

/** The SDK's own SigV4 signer, as the S3 client resolves it (`config.signer`). */
export interface LeaseSigner {
  sign(
    request: never,
    opts: { signingDate: Date; signingRegion: string; signingService: string },
  ): Promise<{ headers: Record<string, string> }>;
}

export class LeasePut {
  constructor(
    private readonly s3: S3Client,
    readonly target: LeaseTarget,
  ) {}

  /**
   * One PutObject of `body` at the target, with If-None-Match: * (`expected` undefined) or If-Match:
   * `expected`, sent once. Resolves with the store's answer, whatever its status; throws only when
   * there is none (a network error, a timeout, `signal`).
   */
  async send(body: Buffer, expected: string | undefined, signal?: AbortSignal): Promise<LeasePutAnswer> {
    const { s3, target } = this;
    const signer = await (s3.config.signer as unknown as () => Promise<LeaseSigner>)();
    // The SDK's correction for a skewed local clock (learnt from the store's answers), as it signs.
    const offset = (s3.config as { systemClockOffset?: number }).systemClockOffset ?? 0;
    const headers = await signLeasePut(signer, target, body, expected, new Date(Date.now() + offset));
    const { response } = (await s3.config.requestHandler.handle(
      {
        method: 'PUT',
        protocol: target.protocol,
        hostname: target.hostname,
        port: target.port,
        path: target.path,
        query: {},
        headers,
        body,
      } as never,
      signal ? { abortSignal: signal } : {},
    )) as HandledPut;
    const status = response.statusCode;
    const text = await readSmall(response.body);
    const etag = headerOf(response.headers, 'etag');
    if (status >= 200 && status < 300) return { status, etag, code: undefined, message: undefined };
    return { status, etag, code: xmlField(text, 'Code'), message: xmlField(text, 'Message') };
  }
}

/**
 * The signed headers of the lease's PutObject, `authorization` included: the request is assembled here
 * and signed by the SDK's own SigV4 signer (the client's credentials, payload hash in
 * x-amz-content-sha256, S3's unescaped paths), so no signing is written here.
 */
export async function signLeasePut(
  signer: LeaseSigner,
  target: LeaseTarget,
  body: Buffer,
  expected: string | undefined,
  date: Date,
): Promise<Record<string, string>> {
  const headers: Record<string, string> = {
    'content-length': String(body.length),
    'content-type': 'application/json',
    host: target.host,
  };
  if (expected === undefined) headers['if-none-match'] = '*';
  else headers['if-match'] = expected;
  const request = {
    method: 'PUT',
    protocol: target.protocol,
    hostname: target.hostname,
    port: target.port,
    path: target.path,
    query: {},
    headers,
    body,
  };
  const signed = await signer.sign(request as never, { signingDate: date, signingRegion: target.region, signingService: 's3' });
  return signed.headers;
}

/** The SDK's HTTP handler's answer (typed `any` through the client's config), as far as send reads it. */
export interface HandledPut {
  response: { statusCode: number; headers: Record<string, string>; body: Readable | undefined };
}

export function headerOf(headers: Record<string, string>, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === name) return v;
  return undefined;
}

/** Reads a response body of at most 64 KiB (an error document; a success has none), draining the rest. */
export async function readSmall(body: Readable | undefined): Promise<string> {
  if (!body) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    if (size < 65536) chunks.push(b);
    size += b.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function xmlField(xml: string, name: string): string | undefined {
  const m = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  return m ? m[1] : undefined;
}
