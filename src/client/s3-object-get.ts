/**
 * A restore's GetObjects (snapshots and WAL segments) without the SDK's middleware stack, the way
 * s3-lease-put.ts sends the lease's renewals: signed with the S3 client's own SigV4 signer and sent
 * through its own request handler (its agents, keep-alive sockets, TLS settings and timeouts).
 *
 * Why: through the SDK each GetObject costs ~1.9 ms of CPU on the event loop (middleware, endpoint
 * rules, a CRC32 of the empty request body, user agent); signed and sent here, ~0.5 ms. A restore of a
 * long history reads one object per WAL segment (a day at `sync-interval: 1s` is up to 86,400 of them).
 *
 * Only what the SDK itself sent is replayed: the first read of an object under the replica's
 * generations goes through the SDK, which resolves the endpoint (path or virtual-hosted style, custom
 * endpoints) and encodes the key; a middleware records where it went. The key's part below the
 * generations directory is written by us (hex names, `snapshots`, `wal`, `.lz4`) and is the same
 * encoded or not, so another object's path is the recorded one with that part replaced; a key whose
 * part is not of that form is read through the SDK. A request that was not plain SigV4 for `s3`
 * records nothing (see signedTarget), and every read stays with the SDK.
 */
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { readSmall, signedTarget, xmlField, type HandledPut, type LeaseSigner, type LeaseTarget } from './s3-lease-put.js';

/** Characters that S3 key encoding leaves as they are (and `/`, kept between segments). */
const PLAIN_TAIL = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/** Where GetObjects of keys under `under` go: the recorded request's path without the key's tail. */
export interface ObjectGetTarget extends Omit<LeaseTarget, 'path'> {
  /** The SDK's encoding of the bucket (path style) and of `under`, up to the tail. */
  pathPrefix: string;
}

/** A store's answer to a GetObject sent here: the body for a 200, else the status and its error. */
export type ObjectGetAnswer = { status: 200; body: Readable } | { status: number; code: string | undefined; message: string | undefined };

/**
 * Records, on `s3`, where the SDK sends a GetObject of a key under `under` (a directory, ending in
 * `/`); `onTarget` is called with it once such a request went out signed with plain SigV4 for s3.
 */
export function recordObjectGets(s3: S3Client, under: string, onTarget: (t: ObjectGetTarget) => void): void {
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      // The deserialize step runs last before the request is sent: the request is final and signed.
      const key = (args.input as { Key?: unknown }).Key;
      if (context.commandName === 'GetObjectCommand' && typeof key === 'string') {
        const tail = tailOf(key, under);
        const target = tail !== undefined ? signedTarget(args.request) : undefined;
        if (target && tail !== undefined && target.path.endsWith(`/${tail}`)) {
          const { path, ...rest } = target;
          onTarget({ ...rest, pathPrefix: path.slice(0, path.length - tail.length) });
        }
      }
      return next(args);
    },
    { step: 'deserialize', name: 'stnObjectGetTarget' },
  );
}

/** The part of `key` below `under`, if it is plain enough to be replayed; else undefined. */
export function tailOf(key: string, under: string): string | undefined {
  if (!key.startsWith(under)) return undefined;
  const tail = key.slice(under.length);
  return PLAIN_TAIL.test(tail) ? tail : undefined;
}

export class ObjectGet {
  constructor(
    private readonly s3: S3Client,
    readonly target: ObjectGetTarget,
  ) {}

  /**
   * One GetObject of the key whose tail (see tailOf) is `tail`. Resolves with the store's answer,
   * whatever its status; throws only when there is none (a network error, a timeout, `signal`).
   */
  async send(tail: string, signal?: AbortSignal): Promise<ObjectGetAnswer> {
    const { s3, target } = this;
    const signer = await (s3.config.signer as unknown as () => Promise<LeaseSigner>)();
    // The SDK's correction for a skewed local clock (learnt from the store's answers), as it signs.
    const offset = (s3.config as { systemClockOffset?: number }).systemClockOffset ?? 0;
    const { request, headers } = await signObjectGet(signer, target, tail, new Date(Date.now() + offset));
    const { response } = (await s3.config.requestHandler.handle(
      { ...request, headers } as never,
      signal ? { abortSignal: signal } : {},
    )) as HandledPut;
    const body = response.body as Readable;
    if (response.statusCode === 200) return { status: 200, body };
    const text = await readSmall(body);
    return { status: response.statusCode, code: xmlField(text, 'Code'), message: xmlField(text, 'Message') };
  }
}

/**
 * The GetObject of the key with `tail` at `target`, and its signed headers (`authorization` included),
 * signed by the SDK's own SigV4 signer (the client's credentials, the empty payload's hash in
 * x-amz-content-sha256, S3's unescaped paths): no signing is written here.
 */
export async function signObjectGet(signer: LeaseSigner, target: ObjectGetTarget, tail: string, date: Date) {
  const request = {
    method: 'GET',
    protocol: target.protocol,
    hostname: target.hostname,
    port: target.port,
    path: `${target.pathPrefix}${tail}`,
    query: {},
    headers: { host: target.host },
  };
  const signed = await signer.sign(request as never, { signingDate: date, signingRegion: target.region, signingService: 's3' });
  return { request, headers: signed.headers };
}
