/**
 * `npm run bench:embedded`: what replication inside the application's own Node process costs its event
 * loop. The app (bench/lib/embedded-app.ts) commits 5-row transactions at a steady rate on its event
 * loop, with stn-replicate embedded (a file replica, default intervals: in its worker thread, the
 * default) or without replication, alternating, each run in a fresh process and directory. `--inline`
 * adds a third variant: stn-replicate on the app's own thread (`inline: true`, how it ran before the
 * worker thread), to see what the worker buys.
 *
 *   npm run bench:embedded -- [--runs N] [--seconds S] [--rate TX_PER_SECOND] [--inline]
 *
 * Reported per variant (medians over runs): event-loop delay p50/p99/max (perf_hooks histogram), the
 * lateness of a 1 ms timer p99/max, and commit latency p50/p99/max; then with/without differences
 * against the targets (p99 +1 ms at most, max +5 ms at most). Litestream does not apply (it cannot run
 * inside a Node process; as a sidecar it costs the loop nothing but a CPU share). The JSON with every
 * sample goes to bench/out/embedded-<timestamp>.json.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { findRoot, median } from './lib/shared.js';

interface Triple {
  p50: number;
  p99: number;
  max: number;
}
interface Sample {
  delay: Triple;
  timerLate: Triple;
  commit: Triple;
  commitsOver5ms?: number;
  tx: number;
  seconds: number;
  rows: number;
}
type Mode = 'none' | 'ours' | 'inline';
const NAMES: Record<Mode, string> = { none: 'no replication', ours: 'stn-replicate embedded', inline: 'in-process (inline)' };
const TARGET = { p99PlusMs: 1, maxPlusMs: 5 };

function main(): void {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      seconds: { type: 'string', default: '10' },
      rate: { type: 'string', default: '500' },
      inline: { type: 'boolean', default: false },
    },
  });
  const runs = Number(values.runs);
  const seconds = Number(values.seconds);
  const rate = Number(values.rate);
  const root = findRoot();
  const app = join(root, 'dist', 'bench', 'lib', 'embedded-app.js');
  const samples: Record<Mode, Sample[]> = { none: [], ours: [], inline: [] };
  const modes: Mode[] = values.inline ? ['none', 'ours', 'inline'] : ['none', 'ours'];
  const log = (s: string) => console.log(s);
  log(`embedded benchmark: ${rate} tx/s for ${seconds} s per run, ${runs} runs per variant, alternating`);

  for (let round = 0; round < runs; round++) {
    const order: Mode[] = modes.map((_, i) => modes[(i + round) % modes.length]!);
    for (const mode of order) {
      const dir = mkdtempSync(join(tmpdir(), 'stn-bench-embedded-'));
      try {
        const r = spawnSync(process.execPath, [app, dir, mode, String(seconds), String(rate)], {
          encoding: 'utf8',
          env: { PATH: process.env.PATH ?? '', HOME: dir },
        });
        if (r.status !== 0) throw new Error(`${mode}: exit ${r.status}\n${r.stderr}`);
        const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Sample;
        if (s.rows < s.tx) throw new Error(`${mode}: ${s.rows} rows after ${s.tx} transactions`);
        samples[mode].push(s);
        log(
          `round ${round + 1}/${runs}  ${NAMES[mode].padEnd(24)} loop delay p50 ${s.delay.p50.toFixed(2)} p99 ${s.delay.p99.toFixed(2)} max ${s.delay.max.toFixed(1)} ms` +
            `  commit p99 ${s.commit.p99.toFixed(2)} max ${s.commit.max.toFixed(1)} ms (${s.commitsOver5ms ?? '?'} over 5 ms)  ${s.tx} tx`,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }

  const med = (mode: Mode, f: (s: Sample) => number) => median(samples[mode].map(f));
  const rows: [string, (s: Sample) => number][] = [
    ['loop delay p50 ms', (s) => s.delay.p50],
    ['loop delay p99 ms', (s) => s.delay.p99],
    ['loop delay max ms', (s) => s.delay.max],
    ['1 ms timer late p99 ms', (s) => s.timerLate.p99],
    ['1 ms timer late max ms', (s) => s.timerLate.max],
    ['commit p50 ms', (s) => s.commit.p50],
    ['commit p99 ms', (s) => s.commit.p99],
    ['commit max ms', (s) => s.commit.max],
  ];
  const lines = [
    '',
    `host: ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), node ${process.version}`,
    `median of ${runs} runs       ${NAMES.none.padStart(16)} ${NAMES.ours.padStart(24)}   difference   ratio${values.inline ? `  ${NAMES.inline.padStart(20)}` : ''}`,
  ];
  for (const [name, f] of rows) {
    const a = med('none', f);
    const b = med('ours', f);
    const c = values.inline ? `  ${med('inline', f).toFixed(2).padStart(20)}` : '';
    lines.push(
      `${name.padEnd(24)} ${a.toFixed(2).padStart(16)} ${b.toFixed(2).padStart(24)}   ${(b - a >= 0 ? '+' : '') + (b - a).toFixed(2).padStart(9)}   ${(a > 0 ? b / a : NaN).toFixed(2).padStart(5)}${c}`,
    );
  }
  const p99Plus = med('ours', (s) => s.delay.p99) - med('none', (s) => s.delay.p99);
  const maxPlus = med('ours', (s) => s.delay.max) - med('none', (s) => s.delay.max);
  lines.push(
    '',
    `target  loop delay p99 +${TARGET.p99PlusMs} ms at most: ${p99Plus >= 0 ? '+' : ''}${p99Plus.toFixed(2)} ms ${p99Plus <= TARGET.p99PlusMs ? 'MET' : 'NOT MET'}`,
    `target  loop delay max +${TARGET.maxPlusMs} ms at most: ${maxPlus >= 0 ? '+' : ''}${maxPlus.toFixed(2)} ms ${maxPlus <= TARGET.maxPlusMs ? 'MET' : 'NOT MET'}`,
  );
  log(lines.join('\n'));
  const outDir = join(root, 'bench', 'out');
  mkdirSync(outDir, { recursive: true });
  const createdAt = new Date().toISOString();
  const jsonPath = join(outDir, `embedded-${createdAt.replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    jsonPath,
    `${JSON.stringify({ createdAt, runs, seconds, rate, host: { cpus: cpus().length, node: process.version }, samples, p99PlusMs: p99Plus, maxPlusMs: maxPlus }, null, 2)}\n`,
  );
  log(`\nJSON: ${relative(root, jsonPath)}`);
}

main();
