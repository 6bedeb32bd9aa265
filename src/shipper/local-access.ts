/**
 * Permissions of the local state. Shadow WAL files hold page images of the database, so everything the
 * replicator writes beside it (meta directory, shadow files, the generation file, markers, temp files)
 * is no more readable than the database file itself: the same mode (directories add the execute bit
 * wherever read is set: 0600 -> 0700, 0644 -> 0755) and, when we run as root, the same owner.
 */
import type { Stats } from 'node:fs';
import type { LocalFileAccess } from './shadow-wal.js';

export function databaseAccess(st: Pick<Stats, 'mode' | 'uid' | 'gid'>, runningAsRoot = isRoot()): LocalFileAccess {
  const fileMode = st.mode & 0o666;
  const dirMode = fileMode | ((fileMode & 0o444) >> 2);
  return runningAsRoot ? { fileMode, dirMode, uid: st.uid, gid: st.gid } : { fileMode, dirMode };
}

function isRoot(): boolean {
  return typeof process.geteuid === 'function' && process.geteuid() === 0;
}
