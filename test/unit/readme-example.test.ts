/**
 * The README's library example compiles against the package's public API (src/index.ts, what
 * `import … from 'stn-replicate'` resolves to): a name the API stops exporting, or an option it renames,
 * fails here rather than in a reader's editor.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterEach, describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The first ```ts block of the README's "## Library" section. */
function libraryExample(readme: string): string {
  const section = readme.split(/^## /m).find((s) => s.startsWith('Library\n'));
  if (section === undefined) throw new Error('README.md has no "## Library" section');
  const block = /^```ts\n([\s\S]*?)^```$/m.exec(section);
  if (!block) throw new Error('the "## Library" section of README.md has no ```ts block');
  return block[1]!;
}

/**
 * The node_modules folders Node searches from the root, nearest first: the Node 24 run's copy of the
 * repository (scripts/test-on-node.sh) has only its addons in its own and finds the rest above it.
 */
const modules: string[] = [];
for (let d = root; ; d = dirname(d)) {
  if (existsSync(join(d, 'node_modules'))) modules.push(join(d, 'node_modules'));
  if (dirname(d) === d) break;
}

/** Type-checks `source` as an ES module whose `stn-replicate` is src/index.ts; returns the diagnostics as text. */
function typeCheck(source: string, dir: string): string[] {
  const file = join(dir, 'readme-example.mts');
  writeFileSync(file, source);
  const program = ts.createProgram([file], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noUncheckedIndexedAccess: true,
    esModuleInterop: true,
    skipLibCheck: true,
    noEmit: true,
    types: ['node'],
    typeRoots: modules.map((m) => join(m, '@types')).filter((t) => existsSync(t)),
    // The package by its name, and the example's other imports from the node_modules Node would search.
    paths: {
      'stn-replicate': [join(root, 'src', 'index.ts')],
      '*': [...modules.map((m) => join(m, '@types', '*')), ...modules.map((m) => join(m, '*'))],
    },
  });
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file || d.start === undefined) return text;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    return `${d.file.fileName === file ? 'README example' : d.file.fileName} line ${line + 1}: ${text}`;
  });
}

describe('the README library example', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('type-checks against the public API', () => {
    dir = mkdtempSync(join(tmpdir(), 'readme-example-'));
    const example = libraryExample(readFileSync(join(root, 'README.md'), 'utf8'));
    expect(example).toContain("from 'stn-replicate'");
    expect(typeCheck(example, dir)).toEqual([]);
  });

  it('fails on a name the API does not export', () => {
    dir = mkdtempSync(join(tmpdir(), 'readme-example-'));
    const diagnostics = typeCheck(`import { WalShipper } from 'stn-replicate';\nconsole.log(WalShipper);\n`, dir);
    expect(diagnostics.join('\n')).toMatch(/has no exported member 'WalShipper'/);
  });
});
