import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest directory above this file that has the project's package.json. */
export function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'bin', 'stn-replicate.js'))) {
    if (dirname(dir) === dir) throw new Error('cannot find the stn-replicate repository root');
    dir = dirname(dir);
  }
  return dir;
}
