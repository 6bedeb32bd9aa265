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
  for (let dir = dirname(outputPath); ;) {
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

/** The files that make up a database besides itself, as SQLite names them. */
const COMPANIONS = ['-wal', '-shm', '-journal'] as const;

/**
 * Where `moveAsideAndPlace` puts an existing database: `<db>.replaced-<UTC time>` in the same directory
 * (a rename never crosses a file system), its `-wal`, `-shm` and `-journal` renamed with it so that SQLite
 * still opens the set together. A name already taken gets a counter.
 */
async function asideName(outputPath: string, now: Date): Promise<string> {
  const stamp = now.toISOString().replace(/[-:]/g, '');
  for (let n = 0; ; n++) {
    const name = `${outputPath}.replaced-${stamp}${n === 0 ? '' : `-${n}`}`;
    const taken = await Promise.all(
      [name, ...COMPANIONS.map((c) => name + c)].map((p) =>
        lstat(p).then(
          () => true,
          () => false,
        ),
      ),
    );
    if (!taken.some(Boolean)) return name;
  }
}

/**
 * Gives the finished, fsynced `tmpPath` the name `outputPath` when a database (or a WAL or journal of one)
 * is there already: after `checkNotInUse` passes, each existing file of the set is renamed aside (a
 * rename is atomic per file), the database first, so that no moment has the old WAL beside the new
 * database; then the restored file is linked into place without replacing anything. Returns the names the
 * old files now have. If the last step fails, the old files stay aside under those names (the message
 * says so) rather than over whatever took their place.
 */
export async function moveAsideAndPlace(
  tmpPath: string,
  outputPath: string,
  checkNotInUse: (path: string) => void,
  now: Date,
): Promise<string[]> {
  const dbExists = await lstat(outputPath).then(
    () => true,
    () => false,
  );
  if (dbExists) checkNotInUse(outputPath);
  const aside = await asideName(outputPath, now);
  const moved: string[] = [];
  for (const suffix of ['', ...COMPANIONS]) {
    const from = outputPath + suffix;
    try {
      await rename(from, aside + suffix);
      moved.push(aside + suffix);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue;
      throw new ReplicateError('IO', `moving ${from} aside to ${aside + suffix}: ${describeError(err)}${movedNote(moved)}`, {
        cause: err,
        details: { path: from, movedAside: moved },
      });
    }
  }
  try {
    await moveIntoPlace(tmpPath, outputPath, { synced: true });
  } catch (err) {
    if (err instanceof ReplicateError)
      throw new ReplicateError(err.code, `${err.message}${movedNote(moved)}`, {
        cause: err.cause ?? err,
        details: { ...err.details, movedAside: moved },
      });
    throw err;
  }
  return moved;
}

function movedNote(moved: readonly string[]): string {
  return moved.length === 0 ? '' : ` (the existing files were moved aside: ${moved.join(', ')})`;
}
