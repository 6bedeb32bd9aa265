/** The foreign writers' programs: the sqlite3 shell and python3 with its sqlite3 module. */
import { spawnSync } from 'node:child_process';

/** What is missing ([] when both are there); scripts/install-test-tools.sh installs them on Debian. */
export function missingTools(): string[] {
  const missing: string[] = [];
  if (spawnSync('sqlite3', ['-version'], { stdio: 'ignore' }).status !== 0) missing.push('the sqlite3 command-line shell');
  if (spawnSync('python3', ['-c', 'import sqlite3'], { stdio: 'ignore' }).status !== 0) missing.push('python3 with its sqlite3 module');
  return missing;
}
