/**
 * Where the replication worker's entry file is, and (when running from the TypeScript sources) whether
 * the compiled copy it would run is current. Apart from worker-replication.ts because it is about the
 * build on disk, not the worker's messages.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ReplicateError } from '../errors.js';

let checkedBuild: string | undefined;

/**
 * The worker's entry file. From dist/ (the package, the benchmarks) it sits next to this file. From the
 * TypeScript sources (vitest transforms them in memory, and Node 20 cannot run .ts in a worker thread)
 * the worker runs the compiled copy in dist/ — built by `npm run build`, which `npm test` runs first; a
 * build older than the sources is refused rather than silently tested.
 */
export function workerEntry(): URL {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new URL('./replication-worker.js', here);
  const root = fileURLToPath(new URL('../../', here));
  const entry = join(root, 'dist', 'src', 'embedded', 'replication-worker.js');
  if (checkedBuild !== entry) {
    let built: number;
    try {
      built = statSync(entry).mtimeMs;
    } catch {
      throw new ReplicateError('IO', `starting the replication worker: ${entry} is missing (run npm run build, or pass inline: true)`);
    }
    const newer = newestSource(join(root, 'src'));
    if (newer.mtimeMs > built) {
      throw new ReplicateError(
        'IO',
        `starting the replication worker: the build in dist/ is older than ${newer.path} (run npm run build, or pass inline: true)`,
      );
    }
    checkedBuild = entry;
  }
  return new URL(`file://${entry}`);
}

function newestSource(dir: string): { path: string; mtimeMs: number } {
  let best = { path: dir, mtimeMs: 0 };
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    const c = e.isDirectory() ? newestSource(p) : e.name.endsWith('.ts') ? { path: p, mtimeMs: statSync(p).mtimeMs } : undefined;
    if (c && c.mtimeMs > best.mtimeMs) best = c;
  }
  return best;
}
