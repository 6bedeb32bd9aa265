/**
 * age v1 encryption as a stream stage, through the `age-encryption` package (typage, by age's author):
 * its Encrypter/Decrypter take and return WHATWG streams and work in STREAM chunks of 64 KiB, so memory
 * stays a few chunks whatever the object's size. No cryptography is written here: this module only
 * bridges Node's async iterables to the library's streams and turns its errors into ours.
 *
 * This is the only importer of `age-encryption`; it is loaded only when a replica has age keys (it
 * costs ~0.1 s to load).
 *
 * Secrets: the library's own parse errors quote the whole key, so they are never passed on; every
 * message here names the list, entry and line instead.
 */
import { Decrypter, Encrypter } from 'age-encryption';
import { ReplicateError } from '../errors.js';
import { emptyEntryProblem, keyLines, keyShapeProblem, type AgeKeyKind } from './age-keys.js';

/** Validated keys, one per line of the config's entries. */
export interface ParsedAgeKeys {
  identities: string[];
  recipients: string[];
}

/**
 * Parses `age.identities` and `age.recipients` as Litestream does (each entry a key file's body) and
 * checks every key with the library (checksum and length included). Throws INVALID_ARGUMENT naming the
 * list, entry and line of the first bad key, never the key.
 */
export function parseAgeKeys(age: { identities?: readonly string[]; recipients?: readonly string[] }): ParsedAgeKeys {
  return {
    identities: parseList('identity', age.identities ?? []),
    recipients: parseList('recipient', age.recipients ?? []),
  };
}

function parseList(kind: AgeKeyKind, entries: readonly string[]): string[] {
  const list = kind === 'identity' ? 'age.identities' : 'age.recipients';
  const keys: string[] = [];
  entries.forEach((entry, i) => {
    const lines = keyLines(entry);
    if (lines.length === 0)
      throw new ReplicateError('INVALID_ARGUMENT', `${list}[${i}] ${emptyEntryProblem(kind)}`, { details: { key: `${list}[${i}]` } });
    for (const { line, key } of lines) {
      const where = `${list}[${i}]${entry.includes('\n') ? ` line ${line}` : ''}`;
      let problem = keyShapeProblem(kind, key);
      if (problem === undefined) {
        try {
          if (kind === 'identity') new Decrypter().addIdentity(key);
          else new Encrypter().addRecipient(key);
        } catch {
          // The library's message quotes the key: not passed on.
          problem =
            kind === 'identity'
              ? 'not a valid age secret key (its checksum does not match: a character was changed or lost)'
              : 'not a valid age recipient (its checksum does not match: a character was changed or lost)';
        }
      }
      if (problem !== undefined)
        throw new ReplicateError('INVALID_ARGUMENT', `${where}: ${problem}`, { details: { key: `${list}[${i}]`, line } });
      keys.push(key);
    }
  });
  return keys;
}

/**
 * The stage that encrypts a byte stream to `recipients` (age v1 binary format, as Go's age.Encrypt
 * writes it: header, 16-byte nonce, ChaCha20-Poly1305 STREAM payload).
 */
export function ageEncrypt(recipients: readonly string[]): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Buffer> {
  return async function* encrypt(source) {
    const encrypter = new Encrypter();
    for (const r of recipients) encrypter.addRecipient(r);
    const tracked = trackSource(source);
    const out = await encrypter.encrypt(tracked.stream);
    yield* buffers(out, tracked);
  };
}

export interface DecryptOptions {
  /** The object being read, for messages. */
  label: string;
  /** The replica's name, for messages. */
  replica: string;
}

/**
 * The stage that decrypts an age file with the first of `identities` that opens it. Failures:
 * AGE_IDENTITY when none of them matches the file's recipients (`details.reason` "no-match"), and
 * CORRUPT_OBJECT when the header or the payload does not authenticate (damaged or truncated). Errors of
 * the source itself pass through unchanged.
 */
export function ageDecrypt(
  identities: readonly string[],
  opts: DecryptOptions,
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Buffer> {
  return async function* decrypt(source) {
    const decrypter = new Decrypter();
    for (const id of identities) decrypter.addIdentity(id);
    const tracked = trackSource(source);
    let out: ReadableStream<Uint8Array>;
    try {
      // Resolves once the header is read and its MAC checked with the file key.
      out = await decrypter.decrypt(tracked.stream);
    } catch (err) {
      throw tracked.isSourceError(err) ? err : headerError(err, opts);
    }
    try {
      yield* buffers(out, tracked);
    } catch (err) {
      if (tracked.isSourceError(err)) throw err;
      throw new ReplicateError(
        'CORRUPT_OBJECT',
        `decrypting ${opts.label}: the age payload does not authenticate (the object is damaged or truncated): ${describe(err)}`,
        {
          cause: err,
          details: { object: opts.label },
        },
      );
    }
  };
}

function headerError(err: unknown, opts: DecryptOptions): ReplicateError {
  const message = describe(err);
  if (/no identity matched/i.test(message)) {
    return new ReplicateError(
      'AGE_IDENTITY',
      `decrypting ${opts.label}: none of the age identities of replica ${opts.replica} matches the recipients it was encrypted to; ` +
        "add the identity (secret key) whose public key was among the replica's age.recipients when it was written",
      { details: { object: opts.label, replica: opts.replica, reason: 'no-match' } },
    );
  }
  return new ReplicateError(
    'CORRUPT_OBJECT',
    `decrypting ${opts.label}: the age header is not valid (the object is damaged or truncated): ${message}`,
    {
      cause: err,
      details: { object: opts.label },
    },
  );
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface TrackedSource {
  stream: ReadableStream<Uint8Array>;
  /** Whether `err` is what the source threw (to pass it on as it is). */
  isSourceError(err: unknown): boolean;
  /** Stops reading the source (e.g. closes its file) when the consumer quits early. */
  close(): Promise<void>;
}

/**
 * An async iterable as a pull-driven ReadableStream (high-water mark 0: a chunk is read only when the
 * library asks for one, so nothing is read ahead of it). The library copies what it keeps of a chunk
 * before asking for the next.
 */
function trackSource(source: AsyncIterable<Uint8Array>): TrackedSource {
  const iterator = source[Symbol.asyncIterator]();
  let failure: { error: unknown } | undefined;
  let finished = false;
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let next: IteratorResult<Uint8Array>;
        try {
          next = await iterator.next();
        } catch (error) {
          failure = { error };
          finished = true;
          throw error;
        }
        if (next.done) {
          finished = true;
          controller.close();
        } else {
          controller.enqueue(next.value);
        }
      },
      async cancel() {
        if (finished) return;
        finished = true;
        await iterator.return?.();
      },
    },
    { highWaterMark: 0 },
  );
  return {
    stream,
    isSourceError: (err) => failure !== undefined && failure.error === err,
    close: async () => {
      if (finished) return;
      finished = true;
      await iterator.return?.();
    },
  };
}

/** The library's output chunks as Buffers (no copy); the source is closed however the consumer leaves. */
async function* buffers(out: ReadableStream<Uint8Array>, source: TrackedSource): AsyncGenerator<Buffer> {
  const reader = out.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    }
  } finally {
    // Cancelling the chain reaches the source through the library's pipes; closing it directly covers a
    // pipe that has already let go of it.
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
    await source.close().catch(() => undefined);
  }
}
