/**
 * `npm run build`, second step: the CLI's modules, compiled by tsc into dist/src/, bundled into a few files
 * (dist/src/cli-bundle*.js) that bin/stn-replicate.js loads (the signal latch first, then the CLI).
 *
 * Why: Node resolves, reads, compiles and links every ES module on its own. The CLI is ~120 of ours
 * (`replicate`), and on a 2-vCPU machine that took ~100 ms of CPU per start (measured with the bench's
 * replicator start and a 200 MB restore: 0.41 → 0.31 s and 1.05 → 0.95 s of CPU). The library (dist/src/
 * index.js) is not bundled: an application loads only what it imports.
 *
 * What stays outside the bundle:
 * - every package (better-sqlite3 finds its native binding from its own location, and the cloud SDKs
 *   are loaded on use);
 * - the embedded replication worker (src/embedded/), which the CLI never starts (it replicates on its
 *   own thread) and which finds its worker file next to itself. The chunks are written to dist/src/,
 *   so `./embedded/…` imported from dist/src/replication.js still resolves from the bundle.
 * Modules loaded on use (`await import()`) stay separate chunks, loaded on use.
 */
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const out = join(root, 'dist', 'src');

// The last build's chunks: their names carry content hashes, so new ones would pile up beside them.
for (const f of readdirSync(out)) if (/^cli-bundle.*\.js$/.test(f)) rmSync(join(out, f));

await build({
  // The signal latch is an entry of its own: bin/stn-replicate.js loads it before the rest (to catch a
  // signal that comes while the CLI loads), and the CLI's modules then import that same module, not a copy.
  input: { 'cli-bundle': join(out, 'cli', 'main.js'), 'cli-bundle-signal-latch': join(out, 'cli', 'signal-latch.js') },
  platform: 'node',
  logLevel: 'warn',
  // `lease` loads the lease module on use, but the lease setup every command shares imports it anyway,
  // so the import() cannot make a chunk of its own. That is fine as it is, not worth a warning per build.
  checks: { ineffectiveDynamicImport: false },
  external: (id) => (!id.startsWith('.') && !id.startsWith('/')) || id === './embedded/worker-replication.js',
  // Keep that relative import as written (from dist/src/, as its importer was); by default it is rewritten
  // relative to the chunk's path taken as a directory, one level too high.
  makeAbsoluteExternalsRelative: false,
  output: {
    dir: out,
    format: 'esm',
    entryFileNames: '[name].js',
    chunkFileNames: 'cli-bundle-[name]-[hash].js',
    // Readable stack traces: names and lines as compiled.
    minify: false,
  },
});
