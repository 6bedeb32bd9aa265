/**
 * The lease's PutObject sent without the SDK's middleware (src/client/s3-lease-put.ts) is signed by the
 * S3 client's own signer; here against a SigV4 signer configured as S3 needs it (no path re-encoding,
 * the payload hash in x-amz-content-sha256): the same request at the same instant must carry the same
 * signature, with the condition header signed. The local S3 server does not check signatures, so this
 * is where a mistake in assembling the request shows.
 */
import { createHash, createHmac } from 'node:crypto';
import { S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import type { HttpRequest } from '@smithy/types';
import { describe, expect, it } from 'vitest';
import { signLeasePut, type LeaseSigner, type LeaseTarget } from '../../../src/client/s3-lease-put.js';

class Sha256 {
  private readonly h;
  constructor(secret?: unknown) {
    this.h = secret ? createHmac('sha256', secret as Uint8Array) : createHash('sha256');
  }
  update(data: Uint8Array | string): void {
    this.h.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
}

async function sdkAuthorization(
  target: LeaseTarget,
  headers: Record<string, string>,
  body: Buffer,
  creds: { accessKeyId: string; secretAccessKey: string; sessionToken?: string },
  date: Date,
): Promise<string> {
  const signer = new SignatureV4({
    credentials: creds,
    region: target.region,
    service: 's3',
    sha256: Sha256,
    uriEscapePath: false,
    applyChecksum: true,
  });
  const unsigned = Object.fromEntries(
    Object.entries(headers).filter(([k]) => !['authorization', 'x-amz-date', 'x-amz-security-token'].includes(k)),
  );
  const request = {
    method: 'PUT',
    protocol: target.protocol,
    hostname: target.hostname,
    port: target.port,
    path: target.path,
    query: {},
    headers: unsigned,
    body,
  };
  const signed = await signer.sign(request as HttpRequest, { signingDate: date });
  const h = signed.headers;
  return h.authorization ?? h.Authorization!;
}

const CASES: { name: string; target: LeaseTarget; expected: string | undefined; token?: string }[] = [
  {
    name: 'path style on a custom endpoint with a port, If-Match',
    target: {
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 9000,
      path: '/bucket/db/replica/lease/lease.json',
      host: '127.0.0.1:9000',
      region: 'us-east-1',
    },
    expected: '"0123456789abcdef0123456789abcdef"',
  },
  {
    name: 'virtual-hosted style, If-None-Match, a session token',
    target: {
      protocol: 'https:',
      hostname: 'my-bucket.s3.eu-west-1.amazonaws.com',
      port: undefined,
      path: '/app/lease/lease.json',
      host: 'my-bucket.s3.eu-west-1.amazonaws.com',
      region: 'eu-west-1',
    },
    expected: undefined,
    token: 'FwoGZXIvYXdzEXAMPLETOKEN//////////wEaDA==',
  },
  {
    name: 'a key the SDK percent-encoded (spaces, unicode)',
    target: {
      protocol: 'https:',
      hostname: 's3.us-west-2.amazonaws.com',
      port: undefined,
      path: '/b/my%20dir/%C3%A9t%C3%A9/lease/lease.json',
      host: 's3.us-west-2.amazonaws.com',
      region: 'us-west-2',
    },
    expected: '"etag-with spaces  inside"',
  },
];

async function clientSigner(
  target: LeaseTarget,
  creds: { accessKeyId: string; secretAccessKey: string; sessionToken?: string },
): Promise<LeaseSigner> {
  const s3 = new S3Client({ region: target.region, credentials: creds });
  return await (s3.config.signer as unknown as () => Promise<LeaseSigner>)();
}

describe('the lease PutObject sent without the SDK middleware', () => {
  for (const c of CASES) {
    it(`is signed by the client's signer as S3 signs: ${c.name}`, async () => {
      const creds = {
        accessKeyId: 'AKIDEXAMPLE',
        secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
        ...(c.token ? { sessionToken: c.token } : {}),
      };
      const body = Buffer.from(
        JSON.stringify({
          holder: { host: 'h', pid: 1, instance: '0123456789abcdef' },
          renewedAt: '2026-12-02T12:00:00.000Z',
          ttlMs: 30000,
        }),
      );
      const date = new Date('2026-12-02T12:34:56.789Z');
      const headers = await signLeasePut(await clientSigner(c.target, creds), c.target, body, c.expected, date);
      expect(headers['x-amz-date']).toBe('20261202T123456Z');
      expect(headers['x-amz-content-sha256']).toBe(createHash('sha256').update(body).digest('hex'));
      expect(headers.authorization).toMatch(new RegExp(`SignedHeaders=[^,]*${c.expected === undefined ? 'if-none-match' : 'if-match'}`));
      expect(headers[c.expected === undefined ? 'if-none-match' : 'if-match']).toBe(c.expected ?? '*');
      expect(headers['x-amz-security-token']).toBe(c.token);
      expect(headers.authorization).toBe(await sdkAuthorization(c.target, headers, body, creds, date));
    });
  }
});
