/**
 * Mode and owner for local files that hold (or describe) a database's content — the meta directory
 * beside it (shadow WAL files are page images), restore markers — taken from the database file, so
 * that they are never more readable than the database itself. Directories get the file's mode with
 * execute added wherever read is set (0600 → 0700, 0640 → 0750, 0644 → 0755).
 *
 * The owner is changed only where the process may (as root); elsewhere a chown fails with EPERM and
 * is skipped, as Litestream does. Modes are set exactly (chmod after create), not left to the umask.
 */
import { type Stats, chownSync, fchmodSync, fchownSync, fstatSync, mkdirSync, statSync, chmodSync } from 'node:fs';
import { chmod, chown, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errnoCode } from '../errors.js';

export interface FilePermissions {
  /** Permission bits (at most 0o777) of files. */
  readonly fileMode: number;
  /** Permission bits of directories. */
  readonly dirMode: number;
  /** Owner to give files and directories, where the process may. */
  readonly uid?: number;
  readonly gid?: number;
}

/** When there is no database file to copy from (Litestream's defaults without one). */
export const DEFAULT_FILE_PERMISSIONS: FilePermissions = { fileMode: 0o600, dirMode: 0o700 };

/** A directory mode for files of `fileMode`: execute (search) wherever read is allowed. */
export function dirModeFor(fileMode: number): number {
  const m = fileMode & 0o777;
  return m | ((m & 0o444) >> 2);
}

/** The permissions of a database file (its stat), for what is created beside it. */
export function permissionsOf(st: Pick<Stats, 'mode' | 'uid' | 'gid'>): FilePermissions {
  const fileMode = st.mode & 0o777;
  return { fileMode, dirMode: dirModeFor(fileMode), uid: st.uid, gid: st.gid };
}

type Kind = 'file' | 'dir';

const modeFor = (p: FilePermissions, kind: Kind) => (kind === 'file' ? p.fileMode : p.dirMode);

function wantsChown(p: FilePermissions, st: { uid: number; gid: number }): boolean {
  return (p.uid !== undefined && p.uid !== st.uid) || (p.gid !== undefined && p.gid !== st.gid);
}

/** Only a process that may not chown (not root) fails here; that is not an error. */
function chownFailed(err: unknown): void {
  if (errnoCode(err) !== 'EPERM') throw err;
}

/** Gives an open file (or directory) its owner, then its exact mode. */
export function applyPermissionsToFdSync(fd: number, p: FilePermissions, kind: Kind): void {
  if (wantsChown(p, fstatSync(fd))) {
    try {
      fchownSync(fd, p.uid ?? -1, p.gid ?? -1);
    } catch (err) {
      chownFailed(err);
    }
  }
  fchmodSync(fd, modeFor(p, kind));
}

export function applyPermissionsSync(path: string, p: FilePermissions, kind: Kind): void {
  if (wantsChown(p, statSync(path))) {
    try {
      chownSync(path, p.uid ?? -1, p.gid ?? -1);
    } catch (err) {
      chownFailed(err);
    }
  }
  chmodSync(path, modeFor(p, kind));
}

export async function applyPermissions(path: string, p: FilePermissions, kind: Kind): Promise<void> {
  if (wantsChown(p, await stat(path))) {
    await chown(path, p.uid ?? -1, p.gid ?? -1).catch(chownFailed);
  }
  await chmod(path, modeFor(p, kind));
}

/** The directories from `dir` up that do not exist yet, outermost first. */
function missingDirsSync(dir: string): string[] {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    try {
      statSync(d);
      break;
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    missing.unshift(d);
    if (dirname(d) === d) break;
  }
  return missing;
}

/**
 * Creates `dir` and its missing parents, each with the directory mode and owner (created with the
 * mode already, so never more open than that, not even for a moment). Existing directories are left
 * as they are.
 */
export function mkdirWithPermissionsSync(dir: string, p: FilePermissions): void {
  for (const d of missingDirsSync(dir)) {
    try {
      mkdirSync(d, { mode: p.dirMode });
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') continue; // created meanwhile by someone else: theirs
      throw err;
    }
    applyPermissionsSync(d, p, 'dir');
  }
}

export async function mkdirWithPermissions(dir: string, p: FilePermissions): Promise<void> {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    const exists = await stat(d).then(
      () => true,
      (err: unknown) => {
        if (errnoCode(err) === 'ENOENT') return false;
        throw err;
      },
    );
    if (exists) break;
    missing.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing) {
    try {
      await mkdir(d, { mode: p.dirMode });
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') continue;
      throw err;
    }
    await applyPermissions(d, p, 'dir');
  }
}
