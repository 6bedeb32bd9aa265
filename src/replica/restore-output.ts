/**
 * The restore's output file: refuse to clobber, create missing parent directories (and remove them again
 * on failure), and move the finished temp file into place without ever replacing an existing file.
 */
import { constants as fsConstants } from 'node:fs';
import { access, link, lstat, mkdir, open, rename, rmdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { describeError, errnoCode, ReplicateError } from '../errors.js';
import { fsyncDir } from '../internal/atomic-file.js';

/** Throws OUTPUT_EXISTS when the output, or a WAL that SQLite would adopt for it, is already there. */
export async function assertOutputFree(outputPath: string): Promise<void> {
  for (const p of [outputPath, `${outputPath}-wal`]) {
    const exists = await lstat(p).then(
      () => true,
      (err: unknown) => {
        if (errnoCode(err) === 'ENOENT') return false;
        // ENOTDIR: a parent is a file; EACCES: a parent cannot be searched.
        throw new ReplicateError('OUTPUT_NOT_WRITABLE', `cannot write restore output in ${dirname(p)}: ${describeError(err)}`, {
          cause: err,
          details: { path: p },
        });
      },
    );
    if (exists) {
      const what = p === outputPath ? 'output path already exists' : 'a WAL file for the output path already exists';
      throw new ReplicateError('OUTPUT_EXISTS', `cannot restore, ${what}: ${p}`, { details: { path: p } });
    }
  }
}

/** Creates the output's missing parent directories; returns those it created (outermost first). */
export async function prepareOutputDir(outputPath: string): Promise<string[]> {
  const missing: string[] = [];
  for (let dir = dirname(outputPath); ; ) {
    const exists = await stat(dir).then(
      () => true,
      () => false,
    );
    if (exists) break;
    missing.unshift(dir);
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  const created: string[] = [];
  try {
    for (const d of missing) {
      await mkdir(d, { mode: 0o700 });
      created.push(d);
    }
    await access(dirname(outputPath), fsConstants.W_OK);
  } catch (err) {
    await removeDirs(created);
    throw new ReplicateError('OUTPUT_NOT_WRITABLE', `cannot write restore output in ${dirname(outputPath)}: ${describeError(err)}`, {
      cause: err,
      details: { path: outputPath },
    });
  }
  return created;
}

/** Removes directories (innermost first) if they are empty; best effort. */
export async function removeDirs(dirs: readonly string[]): Promise<void> {
  for (const d of [...dirs].reverse()) await rmdir(d).catch(() => undefined);
}

/**
 * fsyncs `tmpPath` (unless the caller already did) and gives it the name `outputPath`, refusing to replace
 * a file that appeared meanwhile.
 */
export async function moveIntoPlace(tmpPath: string, outputPath: string, opts: { synced?: boolean } = {}): Promise<void> {
  if (!opts.synced) {
    const h = await open(tmpPath, 'r+');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  }
  try {
    // link() fails with EEXIST instead of replacing, unlike rename().
    await link(tmpPath, outputPath);
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') {
      throw new ReplicateError('OUTPUT_EXISTS', `cannot restore, output path already exists: ${outputPath}`, { cause: err });
    }
    // File systems without hard links: re-check, then rename.
    await assertOutputFree(outputPath);
    await rename(tmpPath, outputPath);
  }
  await fsyncDir(dirname(outputPath));
}
