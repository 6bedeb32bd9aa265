/**
 * The restore's GetObjects sent without the SDK's middleware (src/client/s3-object-get.ts): which keys
 * may be replayed on the recorded path, and the signature, checked against a SigV4 signer configured as
 * S3 needs it (the local S3 server does not check signatures, so this is where a mistake shows).
 */
import { createHash, createHmac } from 'node:crypto';
import { S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import type { HttpRequest } from '@smithy/types';
import { describe, expect, it } from 'vitest';
import type { LeaseSigner } from '../../../src/client/s3-lease-put.js';
import { signObjectGet, tailOf, type ObjectGetTarget } from '../../../src/client/s3-object-get.js';

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

describe('tailOf', () => {
  it('gives the part below the generations directory when S3 key encoding leaves it as it is', () => {
    expect(tailOf('db/generations/0123456789abcdef/wal/00000001_00001038.wal.lz4', 'db/generations/')).toBe(
      '0123456789abcdef/wal/00000001_00001038.wal.lz4',
    );
    expect(tailOf('my dir/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4', 'my dir/generations/')).toBe(
      '0123456789abcdef/snapshots/00000000.snapshot.lz4',
    );
  });
  it('gives nothing for another directory or a tail the SDK would encode', () => {
    expect(tailOf('other/generations/x.lz4', 'db/generations/')).toBeUndefined();
    expect(tailOf('db/generations/a b.lz4', 'db/generations/')).toBeUndefined();
    expect(tailOf('db/generations/été.lz4', 'db/generations/')).toBeUndefined();
    expect(tailOf('db/generations//x', 'db/generations/')).toBeUndefined();
    expect(tailOf('db/generations/', 'db/generations/')).toBeUndefined();
  });
});

const TARGETS: { name: string; target: ObjectGetTarget; token?: string }[] = [
  {
    name: 'path style on a custom endpoint with a port',
    target: {
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 9000,
      pathPrefix: '/bucket/db/generations/',
      host: '127.0.0.1:9000',
      region: 'us-east-1',
    },
  },
  {
    name: 'virtual-hosted style, an encoded prefix, a session token',
    target: {
      protocol: 'https:',
      hostname: 'b.s3.eu-west-1.amazonaws.com',
      port: undefined,
      pathPrefix: '/my%20dir/%C3%A9t%C3%A9/generations/',
      host: 'b.s3.eu-west-1.amazonaws.com',
      region: 'eu-west-1',
    },
    token: 'FwoGZXIvYXdzEXAMPLETOKEN//////////wEaDA==',
  },
];

describe('the GetObject sent without the SDK middleware', () => {
  for (const c of TARGETS) {
    it(`is signed by the client's signer as S3 signs: ${c.name}`, async () => {
      const creds = {
        accessKeyId: 'AKIDEXAMPLE',
        secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
        ...(c.token ? { sessionToken: c.token } : {}),
      };
      const s3 = new S3Client({ region: c.target.region, credentials: creds });
      const signer = await (s3.config.signer as unknown as () => Promise<LeaseSigner>)();
      const date = new Date('2026-12-02T12:34:56.789Z');
      const tail = '0123456789abcdef/wal/00000001_00001038.wal.lz4';
      const { request, headers } = await signObjectGet(signer, c.target, tail, date);
      expect(request.path).toBe(`${c.target.pathPrefix}${tail}`);
      expect(headers['x-amz-date']).toBe('20261202T123456Z');
      expect(headers['x-amz-content-sha256']).toBe(createHash('sha256').update('').digest('hex'));
      expect(headers['x-amz-security-token']).toBe(c.token);
      const reference = new SignatureV4({
        credentials: creds,
        region: c.target.region,
        service: 's3',
        sha256: Sha256,
        uriEscapePath: false,
        applyChecksum: true,
      });
      const expected = await reference.sign({ ...request, headers: { host: c.target.host } } as HttpRequest, { signingDate: date });
      expect(headers.authorization).toBe(expected.headers.authorization ?? expected.headers.Authorization);
      s3.destroy();
    });
  }
});
