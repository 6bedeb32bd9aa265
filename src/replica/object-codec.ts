/**
 * How a replica's objects (snapshots and WAL segments) are encoded: the one place where payload bytes
 * become stored bytes and back, for every backend and every reader (upload, restore, validation, the
 * position recovery, continuing after a restore).
 *
 * The stages, in Litestream v0.3.13's order (replica.go: the LZ4 writer is wrapped around the age
 * writer, so bytes are compressed first and the compressed frame is encrypted):
 *
 *   write: payload ─► LZ4 frame ─► age v1 encryption (only with recipients) ─► object
 *   read:  object ─► age v1 decryption (only when the object is age) ─► LZ4 frame decode ─► payload
 *
 * Reading looks at the object's first bytes, so one codec reads both kinds: an age file starts with its
 * version line, an LZ4 frame with its magic number. An encrypted object with no identity to open it is
 * AGE_IDENTITY (not a confusing "bad LZ4 magic"); a plain object is read whether or not identities are
 * configured (Litestream fails on it when they are; see docs/compatibility.md).
 */
import { ReplicateError } from '../errors.js';
import { listShapeProblems, startsLikeAge, AGE_INTRO } from '../internal/age-keys.js';
import { decodeLz4Frame, encodeLz4Frame, type DecodeOptions } from '../internal/lz4-frame.js';
import { decodeLz4FrameToFile, type DecodedToFile } from '../internal/lz4-frame-to-file.js';

/**
 * A replica's age keys as Litestream's config has them: each entry the body of a key file (one key per
 * line; blank and `#` lines skipped). X25519 keys only (what Litestream v0.3.13 reads). Identities are
 * secrets: never logged, never in a message.
 */
export interface AgeOptions {
  /** Secret keys (`AGE-SECRET-KEY-1…`): decrypt on restore, validation and position recovery. */
  identities?: readonly string[];
  /** Public keys (`age1…`): every snapshot and WAL segment written is encrypted to all of them. */
  recipients?: readonly string[];
}

/** Whether `age` asks for anything (a config without keys is no encryption). */
export function hasAgeKeys(age: AgeOptions | undefined): age is AgeOptions {
  return (age?.identities?.length ?? 0) + (age?.recipients?.length ?? 0) > 0;
}

/**
 * Checks the keys' form at once, without loading the age library (their checksums are checked when the
 * codec is made). Throws INVALID_ARGUMENT naming the replica, list, entry and line; never a key.
 */
export function checkAgeKeyShapes(age: AgeOptions | undefined, replica: string): void {
  if (!hasAgeKeys(age)) return;
  const problems = [
    ...listShapeProblems('identity', 'age.identities', age.identities ?? []),
    ...listShapeProblems('recipient', 'age.recipients', age.recipients ?? []),
  ];
  if (problems.length > 0) throw new ReplicateError('INVALID_ARGUMENT', `replica ${replica}: ${problems[0]}`, { details: { replica } });
}

type Stage = (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Buffer>;

export interface ObjectDecodeOptions extends Omit<DecodeOptions, 'label'> {
  /** The object being read (its location), for messages. */
  label: string;
}

export class ObjectCodec {
  private constructor(
    private readonly replica: string,
    private readonly encryptStage: Stage | undefined,
    private readonly identities: readonly string[],
    private readonly decryptFor: ((opts: { label: string; replica: string }) => Stage) | undefined,
  ) {}

  /** LZ4 only: no age keys. */
  static plain(replica: string): ObjectCodec {
    return new ObjectCodec(replica, undefined, [], undefined);
  }

  /**
   * The codec for a replica with `age` (none: LZ4 only). Loads the age library only when there are
   * keys; throws INVALID_ARGUMENT for a malformed key (naming where it is, never the key).
   */
  static async create(age: AgeOptions | undefined, replica: string): Promise<ObjectCodec> {
    if (!hasAgeKeys(age)) return ObjectCodec.plain(replica);
    checkAgeKeyShapes(age, replica);
    const { ageDecrypt, ageEncrypt, parseAgeKeys } = await import('../internal/age-stream.js');
    let keys: ReturnType<typeof parseAgeKeys>;
    try {
      keys = parseAgeKeys(age);
    } catch (err) {
      if (err instanceof ReplicateError)
        throw new ReplicateError(err.code, `replica ${replica}: ${err.message}`, { details: { ...err.details, replica } });
      throw err;
    }
    const encrypt = keys.recipients.length > 0 ? ageEncrypt(keys.recipients) : undefined;
    return new ObjectCodec(
      replica,
      encrypt,
      keys.identities,
      keys.identities.length > 0 ? (o) => ageDecrypt(keys.identities, o) : undefined,
    );
  }

  /** Whether objects written are encrypted (recipients configured). */
  get encrypts(): boolean {
    return this.encryptStage !== undefined;
  }

  /** Whether encrypted objects can be read (identities configured). */
  get decrypts(): boolean {
    return this.identities.length > 0;
  }

  /**
   * Payload bytes → stored bytes: one LZ4 frame, encrypted when the replica has recipients.
   * `reuseOutput` (see EncodeOptions) is for a consumer that is done with each chunk before it pulls the
   * next; it is ignored when encrypting, since the age stage queues the frame's chunks.
   */
  encode(payload: AsyncIterable<Uint8Array>, opts: { reuseOutput?: boolean } = {}): AsyncGenerator<Buffer> {
    if (this.encryptStage) return this.encryptStage(encodeLz4Frame(payload));
    return encodeLz4Frame(payload, { reuseOutput: opts.reuseOutput === true });
  }

  /**
   * Stored bytes → payload bytes. The LZ4 options (buffer reuse) apply to the frame decoder as they
   * would without age: decryption hands it fresh chunks. Throws AGE_IDENTITY for an encrypted object
   * that this replica's identities cannot open (or when it has none).
   */
  decode(stored: AsyncIterable<Uint8Array>, opts: ObjectDecodeOptions): AsyncGenerator<Buffer> {
    return this.decodeFrames(stored, opts);
  }

  private async *decodeFrames(stored: AsyncIterable<Uint8Array>, opts: ObjectDecodeOptions): AsyncGenerator<Buffer> {
    yield* decodeLz4Frame(opts)(await this.lz4Frame(stored, opts.label));
  }

  /**
   * Stored bytes → payload bytes written into the file open at `fd` from offset 0, the LZ4 blocks decoded
   * and written on a worker thread (see lz4-frame-to-file.ts): for a restore's snapshot. Same errors as
   * `decode`.
   */
  async decodeToFile(stored: AsyncIterable<Uint8Array>, fd: number, opts: { label: string }): Promise<DecodedToFile> {
    return decodeLz4FrameToFile(await this.lz4Frame(stored, opts.label), fd, opts);
  }

  /** The object's LZ4 frame: the object itself, or what its age decryption yields. */
  private async lz4Frame(stored: AsyncIterable<Uint8Array>, label: string): Promise<AsyncIterable<Uint8Array>> {
    const { head, rest, close } = await peek(stored, AGE_INTRO.length);
    if (!startsLikeAge(head)) return rest;
    if (!this.decryptFor) {
      await close();
      throw new ReplicateError(
        'AGE_IDENTITY',
        `reading ${label}: the object is age-encrypted and replica ${this.replica} has no age identities; ` +
          "add the secret key under age: identities: in the replica's config (a restore from a replica URL cannot decrypt: use -config)",
        { details: { object: label, replica: this.replica, reason: 'missing' } },
      );
    }
    return this.decryptFor({ label, replica: this.replica })(rest);
  }
}

/**
 * Reads at least `n` bytes (fewer at the end) and gives a copy of the first `n` back, with a stream that
 * yields everything, those bytes included, exactly as the source chunked it; `close` stops the source
 * when the stream will not be read.
 */
async function peek(
  source: AsyncIterable<Uint8Array>,
  n: number,
): Promise<{ head: Buffer; rest: AsyncIterable<Uint8Array>; close: () => Promise<void> }> {
  const iterator = source[Symbol.asyncIterator]();
  const taken: Uint8Array[] = [];
  let have = 0;
  let ended = false;
  while (have < n) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    taken.push(next.value);
    have += next.value.length;
  }
  const head = Buffer.alloc(Math.min(n, have));
  let at = 0;
  for (const c of taken) {
    if (at >= head.length) break;
    const k = Math.min(c.length, head.length - at);
    head.set(c.subarray(0, k), at);
    at += k;
  }
  const close = async () => {
    if (ended) return;
    ended = true;
    await iterator.return?.();
  };
  async function* rest(): AsyncGenerator<Uint8Array> {
    try {
      yield* taken;
      while (!ended) {
        const next = await iterator.next();
        if (next.done) {
          ended = true;
          return;
        }
        yield next.value;
      }
    } finally {
      await close();
    }
  }
  return { head, rest: rest(), close };
}
