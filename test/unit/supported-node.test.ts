/**
 * The Node versions stn-replicate supports (package.json `engines`, README "Supported Node versions")
 * and what could quietly break one of them: a dependency range that lets a fresh install pull a release
 * that drops a supported Node, a locked package that already has, a test run on another Node whose child
 * processes fall back to the machine's `node`.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  engines: { node: string };
  dependencies: Record<string, string>;
  scripts: Record<string, string>;
};
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { version?: string; dev?: boolean; devOptional?: boolean; engines?: { node?: string } | string[] }>;
};

/** The oldest release of each supported major (20.19 and 22.12: where `require()` of ES modules is on by default). */
const SUPPORTED_MINIMUMS = ['20.19.0', '22.12.0', '24.0.0'];
/** Releases outside the supported lines, which `engines` must refuse. */
const UNSUPPORTED = ['18.20.8', '20.18.3', '21.7.3', '22.11.0', '23.11.1', '25.0.0', '26.0.0'];

/**
 * How far each runtime dependency's range may float, and why. `minor`: only patch releases (`~`) or an
 * exact pin. `major`: a caret range (the publisher drops a Node version only with a new major). A new
 * dependency fails the test below until it is placed here.
 */
const FLOAT: Record<string, ['minor' | 'major', string]> = {
  '@aws-sdk/client-s3': ['minor', "AWS SDK v3 drops Node versions on Node's schedule inside 3.x (Node 20: January 2027)"],
  '@aws-sdk/lib-storage': ['minor', 'as client-s3, and released with it'],
  '@azure/storage-blob': ['minor', 'the Azure SDK raised its Node floor inside 12.x before'],
  '@google-cloud/storage': ['major', 'Google drops Node versions in majors'],
  'age-encryption': [
    'minor',
    'pinned exactly: pre-1.0, and every encrypted replica is read through it (its @noble/* dependencies declare node >= 20.19)',
  ],
  'better-sqlite3': ['major', 'its engines list Node lines per major; 13.x crashes on Node 20'],
  'cli-progress': ['major', 'engines >=4, unchanged for years'],
  commander: ['major', 'drops Node versions in majors (14: Node 20)'],
  lz4: ['major', 'a ^0.6 range is already one minor line'],
  'lz4-napi': ['minor', 'held to one minor line since it was chosen (prebuilt binaries per platform)'],
  'prom-client': ['minor', 'pinned exactly: the metrics exposition only (engines ^16 || ^18 || >=20 at 15.1.3)'],
  ssh2: [
    'minor',
    'the SSH protocol stack under the sftp backend (engines >=10.16): its algorithm lists and defaults change in minors, so it moves deliberately',
  ],
  'xxhash-wasm': ['major', 'WebAssembly, no engines'],
  yaml: ['major', 'engines >=14.6 across 2.x'],
};

/** The Node versions the CI runs pin (`bash scripts/test-on-node.sh X.Y.Z` in package.json scripts). */
const pinnedTestNodes = Object.values(pkg.scripts).flatMap((s) => [...s.matchAll(/test-on-node\.sh (\d+\.\d+\.\d+)/g)].map((m) => m[1]!));

function nodeEngines(entry: { engines?: { node?: string } | string[] }): string | undefined {
  return Array.isArray(entry.engines) ? undefined : entry.engines?.node;
}

describe('supported Node versions', () => {
  it('engines admits each supported line from its oldest release and nothing else', () => {
    for (const v of SUPPORTED_MINIMUMS) expect(semver.satisfies(v, pkg.engines.node), `${v} in ${pkg.engines.node}`).toBe(true);
    for (const v of UNSUPPORTED) expect(semver.satisfies(v, pkg.engines.node), `${v} not in ${pkg.engines.node}`).toBe(false);
  });

  it('the Node versions the test scripts pin are supported ones, Node 24 among them', () => {
    expect(pinnedTestNodes.length).toBeGreaterThan(0);
    for (const v of pinnedTestNodes) expect(semver.satisfies(v, pkg.engines.node), `test-on-node.sh ${v}`).toBe(true);
    expect(pinnedTestNodes.map((v) => semver.major(v))).toContain(24);
    expect(pkg.scripts['test:all'], 'test:all runs the machine Node and then Node 24').toMatch(/^npm test && npm run test:node24\b/);
  });

  it("CI runs exactly the README's test command, and it is the one that covers Node 24", () => {
    // The README's first lines: the command marked "(what CI runs)".
    const readmeTest = /^(\S.*?)\s+#.*\(what CI runs\)$/m.exec(readFileSync(join(root, 'README.md'), 'utf8'))?.[1];
    expect(readmeTest, "README's test command").toBe('npm ci && npm run test:all');
    const ciCommands = readFileSync(join(root, '.ci', 'run'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#') && !/^(set|cd) /.test(l));
    expect(ciCommands).toEqual([readmeTest]);
  });

  it('the suite runs on a supported Node, the one the run asked for', () => {
    expect(semver.satisfies(process.version, pkg.engines.node), `${process.version} in ${pkg.engines.node}`).toBe(true);
    // scripts/test-on-node.sh sets it: without it a mistake in that script could run the machine's Node twice.
    const asked = process.env.STN_TEST_NODE;
    if (asked !== undefined) expect(process.version).toBe(`v${asked}`);
  });

  it('a process started as the tests start them runs on this Node and loads the native addons built for it', () => {
    // What the CLI, the application writers and the test servers do: process.execPath plus a script that
    // resolves better-sqlite3 and lz4 (node-gyp addons, one Node ABI each) from the repository.
    const script = `
      const Database = require('better-sqlite3');
      const lz4 = require('lz4');
      const db = new Database(':memory:');
      const sqlite = db.prepare('select sqlite_version()').pluck().get();
      db.close();
      const input = Buffer.from('stn-replicate '.repeat(100));
      const block = Buffer.alloc(lz4.encodeBound(input.length));
      const out = Buffer.alloc(input.length);
      const n = lz4.decodeBlock(block.subarray(0, lz4.encodeBlock(input, block)), out);
      console.log(JSON.stringify({ version: process.version, modules: process.versions.modules, sqlite, lz4: n === input.length && out.equals(input) }));`;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      version: process.version,
      modules: process.versions.modules,
      sqlite: expect.stringMatching(/^3\./),
      lz4: true,
    });
  });

  it('no test, benchmark or script starts a bare `node` (it would be the machine Node, not the one under test)', () => {
    const offenders: string[] = [];
    const bareNode = [
      /\b(spawn|spawnSync|execFile|execFileSync|fork|exec|execSync|run)\(\s*['"`]node['"`\s]/, // a spawn or exec whose program is the word node
      /-exec['"`]?\s*,\s*['"`]node\s/, // an -exec argument that starts with it
    ];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (/\.(ts|cjs|mjs|js)$/.test(name)) {
          readFileSync(path, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              if (bareNode.some((re) => re.test(line))) offenders.push(`${relative(root, path)}:${i + 1}: ${line.trim()}`);
            });
        }
      }
    };
    for (const dir of ['test', 'torture', 'bench', 'scripts']) walk(join(root, dir));
    expect(offenders).toEqual([]);
  });
});

describe('dependency ranges cannot pull a release that drops a supported Node', () => {
  it('every runtime dependency has a float policy, and its range keeps to it', () => {
    expect(Object.keys(pkg.dependencies).sort()).toEqual(Object.keys(FLOAT).sort());
    for (const [name, range] of Object.entries(pkg.dependencies)) {
      const locked = lock.packages[`node_modules/${name}`]?.version;
      expect(locked, `${name} is in package-lock.json`).toBeDefined();
      expect(semver.satisfies(locked!, range), `${name}@${locked} in ${range}`).toBe(true);
      // The next release a fresh install could pick that changes what the policy guards.
      const [policy, why] = FLOAT[name]!;
      const next = semver.inc(locked!, policy)!;
      expect(semver.satisfies(next, range), `${name} ${range} must not admit ${next} (${why})`).toBe(false);
    }
  });

  it('every package the runtime installs (the whole locked tree) declares the supported Nodes', () => {
    const nodes = [...SUPPORTED_MINIMUMS, ...pinnedTestNodes];
    const refused: string[] = [];
    let runtimePackages = 0;
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === '' || entry.dev || entry.devOptional) continue;
      runtimePackages++;
      const engines = nodeEngines(entry);
      if (engines === undefined) continue;
      for (const v of nodes) if (!semver.satisfies(v, engines)) refused.push(`${path}@${entry.version} (node ${engines}) refuses ${v}`);
    }
    expect(runtimePackages).toBeGreaterThan(50); // the SDKs' trees: a lockfile read wrong would check nothing
    expect(refused).toEqual([]);
  });
});
