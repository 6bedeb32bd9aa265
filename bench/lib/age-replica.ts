/**
 * `--age` for the benchmarks: an age key pair made for the run, and a file replica's objects encrypted to
 * it exactly as Litestream v0.3.13 stores them with `age:` (each LZ4 object wrapped in an age v1 file:
 * compressed, then encrypted), with their times kept (a file replica's object times are its files'
 * mtimes). The keys live only in the run's config files under bench/out.
 */
import { mkdirSync, statSync, utimesSync, createReadStream, createWriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { ageEncrypt } from '../../src/internal/age-stream.js';

export interface AgeKeys {
  identity: string;
  recipient: string;
}

export async function newAgeKeys(): Promise<AgeKeys> {
  const identity = await generateX25519Identity();
  return { identity, recipient: await identityToRecipient(identity) };
}

/** The replica's `age:` lines of a litestream.yml (to indent under the replica item). */
export function ageConfigLines(k: AgeKeys): string[] {
  return ['age:', '  identities:', `    - ${k.identity}`, '  recipients:', `    - ${k.recipient}`];
}

/**
 * Encrypts every object of the file replica `srcDir` (`files`: paths relative to it) into `destDir`,
 * same paths and mtimes. Returns the seconds it took and the encrypted size.
 */
export async function encryptReplica(
  srcDir: string,
  files: { path: string }[],
  destDir: string,
  k: AgeKeys,
): Promise<{ seconds: number; bytes: number }> {
  const t0 = performance.now();
  let bytes = 0;
  for (const f of files) {
    const src = join(srcDir, f.path);
    const dest = join(destDir, f.path);
    mkdirSync(dirname(dest), { recursive: true });
    await pipeline(Readable.from(ageEncrypt([k.recipient])(createReadStream(src, { highWaterMark: 1 << 20 }))), createWriteStream(dest));
    const st = statSync(src);
    utimesSync(dest, st.atime, st.mtime);
    bytes += statSync(dest).size;
  }
  return { seconds: (performance.now() - t0) / 1000, bytes };
}
