/**
 * The object codec: LZ4 then age on the way out, age (when the object is age) then LZ4 on the way in;
 * what each failure is called; that it streams in bounded memory; and that no key ever reaches a message.
 * The bytes are checked against the age library on its own (not only through the codec).
 */
import { randomBytes } from 'node:crypto';
import { Decrypter, Encrypter } from 'age-encryption';
import { describe, expect, it } from 'vitest';
import { isReplicateError, ReplicateError } from '../../../src/errors.js';
import { encodeLz4Frame, LZ4_FRAME_HEADER } from '../../../src/internal/lz4-frame.js';
import { ObjectCodec } from '../../../src/replica/object-codec.js';
import { KEY, OTHER, secretPart } from '../../helpers/age-keys.js';

async function collectBytes(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/** `buf` in chunks of `size`, after a few of 1 to 7 bytes (a reader must gather a header across chunks). */
async function* chunksOf(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  let at = 0;
  for (let tiny = 1; tiny <= 7 && at < buf.length; tiny += 3) {
    yield buf.subarray(at, at + tiny);
    at += tiny;
  }
  for (; at < buf.length; at += size) yield buf.subarray(at, at + size);
}

async function failureOf(p: Promise<unknown>): Promise<ReplicateError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isReplicateError(err)) throw new Error(`expected a ReplicateError, got ${String(err)}`);
  return err;
}

function expectNoSecret(err: ReplicateError): void {
  const text = JSON.stringify({ message: err.message, details: err.details, cause: String(err.cause), stack: err.stack });
  for (const k of [KEY, OTHER]) expect(text).not.toContain(secretPart(k.identity));
}

// A payload with repetition (LZ4 shrinks it) and randomness (it does not), over several STREAM chunks.
const payload = Buffer.concat([Buffer.alloc(200_000, 'stn-replicate '), randomBytes(150_000)]);

describe('ObjectCodec', () => {
  it('plain: one LZ4 frame in Litestream profile, read back', async () => {
    const codec = await ObjectCodec.create(undefined, 'r');
    expect(codec.encrypts).toBe(false);
    const stored = await collectBytes(codec.encode(chunksOf(payload, 10_000)));
    expect(stored.subarray(0, 7)).toEqual(LZ4_FRAME_HEADER);
    expect(await collectBytes(codec.decode(chunksOf(stored, 4099), { label: 'obj' }))).toEqual(payload);
  });

  it('age: the LZ4 frame is encrypted (compress, then encrypt: Litestream v0.3.13 order) to every recipient', async () => {
    const codec = await ObjectCodec.create({ identities: [KEY.identity], recipients: [KEY.recipient, OTHER.recipient] }, 'r');
    expect(codec.encrypts && codec.decrypts).toBe(true);
    const stored = await collectBytes(codec.encode(chunksOf(payload, 64 * 1024 + 3)));
    expect(stored.subarray(0, 22).toString('latin1')).toBe('age-encryption.org/v1\n');
    // The age library alone, with either identity, finds exactly the LZ4 frame of the payload inside.
    for (const id of [KEY.identity, OTHER.identity]) {
      const d = new Decrypter();
      d.addIdentity(id);
      const inner = Buffer.from(await d.decrypt(stored));
      expect(inner.subarray(0, 7)).toEqual(LZ4_FRAME_HEADER);
      expect(inner).toEqual(await collectBytes(encodeLz4Frame(chunksOf(payload, 65_536))));
    }
    expect(await collectBytes(codec.decode(chunksOf(stored, 1000), { label: 'obj' }))).toEqual(payload);
    // An object of one byte, and an empty payload, too.
    for (const p of [Buffer.from('x'), Buffer.alloc(0)]) {
      const s = await collectBytes(codec.encode(chunksOf(p, 1)));
      expect(await collectBytes(codec.decode(chunksOf(s, 5), { label: 'tiny' }))).toEqual(p);
    }
  });

  it("reuseOutput is ignored when encrypting: the age stage may queue the frame's chunks", async () => {
    const codec = await ObjectCodec.create({ identities: [KEY.identity], recipients: [KEY.recipient] }, 'r');
    // Three LZ4 blocks (compressible: little to encrypt), so a reused output buffer would be overwritten
    // while the age stage holds it.
    const big = Buffer.concat([Buffer.alloc(9 * 1024 * 1024, 'stn-replicate '), randomBytes(1000)]);
    for (let i = 0; i < big.length; i += 4096) big[i] = i >> 12;
    const kept: Buffer[] = [];
    for await (const c of codec.encode(chunksOf(big, 1024 * 1024), { reuseOutput: true })) kept.push(c);
    expect((await collectBytes(codec.decode(chunksOf(Buffer.concat(kept), 65_536), { label: 'obj' }))).equals(big)).toBe(true);
  });

  it('reads what the age library encrypted on its own (an LZ4 frame inside), and plain objects whatever the keys', async () => {
    const frame = await collectBytes(encodeLz4Frame(chunksOf(payload, 4096)));
    const e = new Encrypter();
    e.addRecipient(KEY.recipient);
    const external = Buffer.from(await e.encrypt(frame));
    const reader = await ObjectCodec.create({ identities: [OTHER.identity, KEY.identity] }, 'r');
    expect(await collectBytes(reader.decode(chunksOf(external, 5000), { label: 'ext' }))).toEqual(payload);
    // A plain object (written before age was configured) is read too.
    expect(await collectBytes(reader.decode(chunksOf(frame, 5000), { label: 'plain' }))).toEqual(payload);
  });

  it('an encrypted object with no identity, or the wrong one: AGE_IDENTITY, naming the object and replica, never a key', async () => {
    const writer = await ObjectCodec.create({ recipients: [KEY.recipient] }, 'r');
    const stored = await collectBytes(writer.encode(chunksOf(payload, 50_000)));
    let closed = false;
    async function* source(): AsyncGenerator<Buffer> {
      try {
        yield* chunksOf(stored, 1000);
      } finally {
        closed = true;
      }
    }
    const missing = await failureOf(collectBytes(writer.decode(source(), { label: 'gen/snapshots/00000000.snapshot.lz4' })));
    expect(missing.code).toBe('AGE_IDENTITY');
    expect(missing.details).toMatchObject({ reason: 'missing', replica: 'r', object: 'gen/snapshots/00000000.snapshot.lz4' });
    expect(missing.message).toMatch(
      /gen\/snapshots\/00000000\.snapshot\.lz4: the object is age-encrypted and replica r has no age identities/,
    );
    expect(closed).toBe(true);

    const wrong = await ObjectCodec.create({ identities: [OTHER.identity], recipients: [OTHER.recipient] }, 'r');
    const noMatch = await failureOf(collectBytes(wrong.decode(chunksOf(stored, 1000), { label: 'seg' })));
    expect(noMatch.code).toBe('AGE_IDENTITY');
    expect(noMatch.details).toMatchObject({ reason: 'no-match', replica: 'r', object: 'seg' });
    expect(noMatch.message).toMatch(/^decrypting seg: none of the age identities of replica r matches/);
    expectNoSecret(missing);
    expectNoSecret(noMatch);
  });

  it('a damaged or truncated encrypted object is CORRUPT_OBJECT; an error of the source itself passes through as it is', async () => {
    const codec = await ObjectCodec.create({ identities: [KEY.identity], recipients: [KEY.recipient] }, 'r');
    const stored = await collectBytes(codec.encode(chunksOf(payload, 50_000)));
    const flipped = Buffer.from(stored);
    flipped[flipped.length - 100]! ^= 1;
    const damaged = await failureOf(collectBytes(codec.decode(chunksOf(flipped, 4096), { label: 'obj' })));
    expect(damaged.code).toBe('CORRUPT_OBJECT');
    expect(damaged.message).toMatch(/^decrypting obj: the age payload does not authenticate/);
    const truncated = await failureOf(
      collectBytes(codec.decode(chunksOf(stored.subarray(0, stored.length - 70_000), 4096), { label: 'obj' })),
    );
    expect(truncated.code).toBe('CORRUPT_OBJECT');
    const header = await failureOf(collectBytes(codec.decode(chunksOf(stored.subarray(0, 60), 4096), { label: 'obj' })));
    expect(header.code).toBe('CORRUPT_OBJECT');
    expect(header.message).toMatch(/^decrypting obj: the age header is not valid/);
    expectNoSecret(damaged);

    const boom = new ReplicateError('IO', 'connection reset');
    async function* failing(): AsyncGenerator<Buffer> {
      yield* chunksOf(stored.subarray(0, 200_000), 65_536);
      throw boom;
    }
    expect(await failureOf(collectBytes(codec.decode(failing(), { label: 'obj' })))).toBe(boom);
    async function* failingPlain(): AsyncGenerator<Buffer> {
      yield stored.subarray(0, 1000);
      throw boom;
    }
    const writeFail = await failureOf(collectBytes(codec.encode(failingPlain())));
    expect(writeFail).toBe(boom);
  });

  it('streams: memory does not grow with the object (bytes pulled ahead of what was handed on stay bounded)', async () => {
    const codec = await ObjectCodec.create({ identities: [KEY.identity], recipients: [KEY.recipient] }, 'r');
    const MiB = 1024 * 1024;
    const block = randomBytes(MiB); // incompressible: stored size ≈ payload size
    const total = 40 * MiB;
    let pulled = 0;
    async function* source(): AsyncGenerator<Buffer> {
      for (let n = 0; n < total; n += MiB) {
        pulled += MiB;
        yield block;
      }
    }
    let out = 0;
    let aheadMax = 0;
    const storedParts: Buffer[] = [];
    let storedSize = 0;
    for await (const c of codec.encode(source())) {
      out += c.length;
      aheadMax = Math.max(aheadMax, pulled - out);
      // Kept to feed the decoder below (the test's memory, not the codec's); every 16th part is enough
      // to check the bound while decoding, so only sizes are kept for the rest.
      storedParts.push(c);
      storedSize += c.length;
    }
    expect(out).toBeGreaterThan(total);
    // One 4 MiB LZ4 block being gathered, one compressed, and one STREAM chunk: far below the 40 MiB.
    expect(aheadMax).toBeLessThan(10 * MiB);

    let consumed = 0;
    async function* stored(): AsyncGenerator<Buffer> {
      for (const p of storedParts) {
        consumed += p.length;
        yield p;
      }
    }
    let decoded = 0;
    let behindMax = 0;
    for await (const c of codec.decode(stored(), { label: 'big' })) {
      decoded += c.length;
      behindMax = Math.max(behindMax, consumed - decoded);
    }
    expect(decoded).toBe(total);
    expect(storedSize).toBeGreaterThan(total);
    expect(behindMax).toBeLessThan(10 * MiB);
  });

  it('a consumer that stops early closes the source (a file or a download is not left open)', async () => {
    const codec = await ObjectCodec.create({ identities: [KEY.identity], recipients: [KEY.recipient] }, 'r');
    let closed = false;
    async function* source(): AsyncGenerator<Buffer> {
      try {
        for (;;) yield randomBytes(1024 * 1024);
      } finally {
        closed = true;
      }
    }
    let out = 0;
    for await (const c of codec.encode(source())) {
      out += c.length;
      if (out > 3 * 1024 * 1024) break;
    }
    expect(closed).toBe(true);
  });

  it('refuses malformed keys when it is made, naming the replica and the entry, never the key', async () => {
    const bad = KEY.identity.slice(0, -1) + (KEY.identity.endsWith('Q') ? 'P' : 'Q');
    const e = await failureOf(ObjectCodec.create({ identities: [bad], recipients: [KEY.recipient] }, 'backup'));
    expect({ code: e.code, message: e.message }).toEqual({
      code: 'INVALID_ARGUMENT',
      message:
        'replica backup: age.identities[0]: not a valid age secret key (its checksum does not match: a character was changed or lost)',
    });
    expect(JSON.stringify({ m: e.message, d: e.details, c: String(e.cause) })).not.toContain(secretPart(bad).slice(0, 30));
    const shape = await failureOf(ObjectCodec.create({ recipients: [KEY.identity] }, 'backup'));
    expect(shape.message).toMatch(/^replica backup: age\.recipients\[0\]: this is a secret key/);
    expectNoSecret(shape);
  });
});
