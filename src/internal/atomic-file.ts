/**
 * Crash-safe local writes: stream into a temp file next to the target, fsync it, rename it into place,
 * then fsync the directory so the rename itself survives a power cut (Litestream skips that last step).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, unlink, mkdir } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { applyPermissionsToFdSync, mkdirWithPermissions, mkdirWithPermissionsSync, type FilePermissions } from './file-permissions.js';

export interface AtomicWriteOptions {
  fileMode?: number;
  dirMode?: number;
  /**
   * Exact mode and owner for the file (set on the temp file before anything is written) and for the
   * directories created for it; replaces `fileMode`/`dirMode`.
   */
  permissions?: FilePermissions;
  signal?: AbortSignal;
}

/** A temp name beside `path` that no listing mistakes for a real object (always ends in `.tmp`). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes the stream to `path` atomically; returns the number of bytes written. */
export async function writeFileAtomic(
  path: string,
  body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: AtomicWriteOptions = {},
): Promise<number> {
  const perms = opts.permissions;
  if (perms) await mkdirWithPermissions(dirname(path), perms);
  else await mkdir(dirname(path), { recursive: true, mode: opts.dirMode ?? 0o700 });
  const tmp = tempPathFor(path);
  const handle = await open(tmp, 'wx', perms?.fileMode ?? opts.fileMode ?? 0o600);
  let written = 0;
  let renamed = false;
  try {
    if (perms) applyPermissionsToFdSync(handle.fd, perms, 'file');
    for await (const chunk of body) {
      opts.signal?.throwIfAborted();
      let off = 0;
      while (off < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, off, chunk.length - off);
        off += bytesWritten;
      }
      written += chunk.length;
    }
    await handle.sync();
    await handle.close();
    await rename(tmp, path);
    renamed = true;
    await fsyncDir(dirname(path));
    return written;
  } finally {
    if (!renamed) {
      await handle.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    }
  }
}

/**
 * The same for a small buffer, synchronously: for state written while SQLite's write lock is held, which
 * must never wait on an await (see ShipperDb.tryWithWriteLock).
 */
export function writeFileAtomicSync(path: string, data: Buffer, opts: Omit<AtomicWriteOptions, 'signal'> = {}): void {
  const perms = opts.permissions;
  if (perms) mkdirWithPermissionsSync(dirname(path), perms);
  else mkdirSync(dirname(path), { recursive: true, mode: opts.dirMode ?? 0o700 });
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'wx', perms?.fileMode ?? opts.fileMode ?? 0o600);
  let closed = false;
  let renamed = false;
  try {
    if (perms) applyPermissionsToFdSync(fd, perms, 'file');
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
    closeSync(fd);
    closed = true;
    renameSync(tmp, path);
    renamed = true;
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } finally {
    if (!closed) closeSync(fd);
    if (!renamed) {
      try {
        unlinkSync(tmp);
      } catch {
        // never created or already gone
      }
    }
  }
}
