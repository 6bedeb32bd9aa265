/** Making a directory unwritable, even for root (CI runs as root, which ignores permission bits). */
import { execFileSync } from 'node:child_process';

/** Makes `path` unwritable (the immutable flag as root, mode 0555 otherwise); returns the undo. */
export function lockDir(path: string): () => void {
  if (process.getuid?.() === 0) {
    execFileSync('chattr', ['+i', path]);
    return () => execFileSync('chattr', ['-i', path]);
  }
  execFileSync('chmod', ['0555', path]);
  return () => execFileSync('chmod', ['0755', path]);
}
