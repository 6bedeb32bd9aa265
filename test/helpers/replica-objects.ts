/** Reading and rewriting stored replica objects (one LZ4 frame each), to build damaged replicas. */
import { readFile, writeFile } from 'node:fs/promises';
import { decodeLz4Frame, encodeLz4Frame } from '../../src/internal/lz4-frame.js';

/** The decoded content of the object file at `path`. */
export async function readObject(path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const source = (async function* () {
    yield await readFile(path);
  })();
  for await (const c of decodeLz4Frame({ label: path })(source)) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

/** Stores `plain` at `path` as one LZ4 frame in Litestream's profile. */
export async function writeObject(path: string, plain: Buffer): Promise<void> {
  const out: Buffer[] = [];
  for await (const c of encodeLz4Frame(
    (async function* () {
      yield plain;
    })(),
  ))
    out.push(Buffer.from(c));
  await writeFile(path, Buffer.concat(out));
}

/**
 * Decodes the object, lets `change` edit its bytes in place, and encodes it again: the LZ4 checksums
 * match, so only a check of the content itself can find the change.
 */
export async function rewriteObject(path: string, change: (plain: Buffer) => void): Promise<void> {
  const plain = await readObject(path);
  change(plain);
  await writeObject(path, plain);
}
