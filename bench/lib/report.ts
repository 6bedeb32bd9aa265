/**
 * Summary statistics and the printed report. The JSON file gets the same structure plus every raw
 * sample, so runs on different days or machines can be compared without re-parsing text.
 */
import type { Manifest } from './fixture.js';
import type { Sample } from './measure.js';
import type { Timer } from './shared.js';
import { KINDS, totalOf, type KindCounts } from './s3-requests.js';
import type { UploadResult } from './s3-replica.js';

export type Role = 'ours' | 'litestream' | 'floor';

export interface Stats {
  median: number;
  min: number;
  max: number;
}

export interface VariantResult {
  name: string;
  role: Role;
  command: string;
  samples: Sample[];
  seconds: Stats;
  rssMiB: Stats;
}

export interface Ratio {
  variant: string;
  /** variant median / Litestream median. */
  medianSeconds: number;
  medianRss: number;
  /** Per round: this variant's run / Litestream's run of the same round (they ran back to back). */
  perRunSeconds: number[];
}

/** The S3 replica of `--backend s3`. */
export interface S3Info {
  server: string;
  bucket: string;
  prefix: string;
  upload: UploadResult;
  /** Every object was read back and had its file's sha256. */
  verified: boolean;
  /** Each request of the tools held back this long by a proxy (0: none). */
  latencyMs: number;
  /** Per variant, the requests of each timed run, as the server counted them. */
  requestsPerRestore: Record<string, KindCounts[]>;
}

/**
 * Issue 11's targets for restoring from S3, our time / Litestream's: a long history (many segments behind
 * round trips) at most 0.2, any other replica at most 1.0.
 */
export function s3RestoreTarget(profile: string): number {
  return profile === 'long-history' ? 0.2 : 1.0;
}

export interface Report {
  createdAt: string;
  host: { cpus: number; cpuModel: string; node: string };
  litestream: string;
  timer: Timer;
  /** Peak RSS the timer reports for `true`: included in every RSS figure. */
  timerFloorRssMiB: number;
  runs: number;
  onlyLitestream: boolean;
  backend: 'file' | 's3';
  /** With --age: the replica's objects were age-encrypted (to a key pair made for the run) before the runs. */
  age?: { encryptSeconds: number; bytes: number };
  s3?: S3Info;
  fixture: {
    profile: string;
    dir: string;
    reused: boolean;
    builtAt: string;
    buildSeconds: number;
    db: Manifest['db'];
    replica: Omit<Manifest['replica'], 'files'>;
  };
  /** sameBytesAsLitestream: our variants whose output file is byte-identical to Litestream's. */
  correctness: { sourceSha256: string; rows: number; checked: string[]; sameBytesAsLitestream: string[] };
  variants: VariantResult[];
  ratios: Ratio[];
}

export function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  // Even counts: mean of the middle two, so --runs 2 does not just report the faster run.
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s.at(-1)! };
}

export function ratios(variants: VariantResult[]): Ratio[] {
  const base = variants.find((v) => v.role === 'litestream');
  if (!base) return [];
  return variants
    .filter((v) => v !== base)
    .map((v) => ({
      variant: v.name,
      medianSeconds: v.seconds.median / base.seconds.median,
      medianRss: v.rssMiB.median / base.rssMiB.median,
      perRunSeconds: v.samples.map((s, i) => s.seconds / base.samples[i]!.seconds),
    }));
}

const MiB = 1024 * 1024;
const mib = (n: number) => (n / MiB).toFixed(1);
const pct = (a: number, b: number) => `${Math.round((100 * a) / b)}%`;
const num = (n: number, digits = 2) => n.toFixed(digits);

export function formatReport(r: Report): string {
  const f = r.fixture;
  const rep = f.replica;
  const lines = [
    `restore benchmark: stn-replicate vs Litestream ${r.litestream}, ${r.s3 ? 'from S3 (local server)' : 'from a file replica'}${r.age ? ', age-encrypted' : ''}`,
    '',
    ...(r.age
      ? [
          `age         every object age-encrypted (X25519, LZ4 inside, as Litestream writes with age:): ${mib(r.age.bytes)} MiB, encrypted in ${num(r.age.encryptSeconds, 1)} s before the runs`,
        ]
      : []),
    `fixture     ${f.profile}: ${f.dir} (${f.reused ? 'cached' : 'built now'}, ${f.builtAt}, build ${num(f.buildSeconds, 0)} s)`,
    ...(r.s3
      ? [
          `s3          s3://${r.s3.bucket}/${r.s3.prefix} on ${r.s3.server} (a child process on 127.0.0.1, objects in its memory); ` +
            `the file replica's ${r.s3.upload.objects} objects copied there in ${num(r.s3.upload.seconds, 1)} s${r.s3.verified ? ' and read back: same sha256' : ''}`,
          ...(r.s3.latencyMs > 0
            ? [`latency     every request of the tools held back ${r.s3.latencyMs} ms by a proxy (a store across a network)`]
            : []),
        ]
      : []),
    `database    ${mib(f.db.bytes)} MiB, ${f.db.digest.rows.toLocaleString('en-US')} rows`,
    `replica     ${mib(rep.snapshots.bytes + rep.segments.bytes)} MiB in ${rep.generations.length} generation: ` +
      `${rep.snapshots.count} snapshot ${mib(rep.snapshots.bytes)} MiB (LZ4, ${pct(rep.snapshots.bytes, f.db.bytes)} of the db) + ` +
      `${rep.segments.count} WAL segments ${mib(rep.segments.bytes)} MiB in ${rep.indexes} indexes`,
    `method      ${r.runs} timed run${r.runs === 1 ? '' : 's'} per variant after 1 untimed warm-up, variants alternating (order reversed every other round);`,
    `            output deleted and \`sync\` before each run; wall time and peak RSS of the child via ${r.timer === 'gnu-time' ? "/usr/bin/time -f '%e %M'" : 'python3 resource.getrusage(RUSAGE_CHILDREN)'}`,
    `            (RSS includes ${num(r.timerFloorRssMiB, 1)} MiB the timer's forked child held before exec, measured on \`true\`)`,
    `host        ${r.host.cpus} CPUs (${r.host.cpuModel}), node ${r.host.node}`,
    `correctness ${r.correctness.checked.join(', ')}: same content as the source (sha256 ${r.correctness.sourceSha256.slice(0, 16)}…, ${r.correctness.rows.toLocaleString('en-US')} rows)`,
    `            byte-identical to Litestream's output: ${r.correctness.sameBytesAsLitestream.join(', ') || 'none'}`,
  ];
  if (r.onlyLitestream)
    lines.push('', '*** STN_BENCH_ONLY_LITESTREAM: the stn-replicate variants below ran `litestream restore` (harness check only) ***');

  const w = Math.max(...r.variants.map((v) => v.name.length), 7) + 2;
  lines.push(
    '',
    `${''.padEnd(w)}${'wall seconds'.padStart(20)}    ${'peak RSS MiB'.padStart(13)}`,
    `${'variant'.padEnd(w)}${'median'.padStart(8)}${'min'.padStart(6)}${'max'.padStart(6)}    ${'median'.padStart(7)}${'max'.padStart(6)}`,
  );
  for (const v of r.variants) {
    lines.push(
      `${v.name.padEnd(w)}${num(v.seconds.median).padStart(8)}${num(v.seconds.min).padStart(6)}${num(v.seconds.max).padStart(6)}    ` +
        `${num(v.rssMiB.median, 0).padStart(7)}${num(v.rssMiB.max, 0).padStart(6)}`,
    );
  }

  lines.push(
    '',
    `ratio to litestream (< 1 = faster / smaller)`,
    `${'variant'.padEnd(w)}${'time'.padStart(8)}${'RSS'.padStart(6)}    time per round`,
  );
  for (const q of r.ratios) {
    lines.push(
      `${q.variant.padEnd(w)}${num(q.medianSeconds).padStart(8)}${num(q.medianRss).padStart(6)}    ${q.perRunSeconds.map((x) => num(x)).join(' ')}`,
    );
  }
  const ours = r.ratios.find((q) => q.variant === 'stn-replicate');
  if (r.s3 && ours) {
    const target = s3RestoreTarget(r.fixture.profile);
    lines.push(
      `target      stn-replicate / litestream <= ${num(target)} from S3: ${num(ours.medianSeconds)} ${ours.medianSeconds <= target ? 'MET' : 'NOT MET'}`,
    );
  }
  if (r.s3) lines.push('', ...formatRequests(r.s3.requestsPerRestore, w));

  lines.push('', 'commands (from the repository root; OUT is deleted before each run)');
  for (const v of r.variants) lines.push(`  ${v.command}`);
  return lines.join('\n');
}

/** Requests per restore, as the server counted them; "lo-hi" when the timed runs differed. */
function formatRequests(perVariant: Record<string, KindCounts[]>, w: number): string[] {
  const cell = (xs: number[]) => {
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    return lo === hi ? String(lo) : `${lo}-${hi}`;
  };
  const lines = [
    'S3 requests per restore (counted by the server)',
    `${'variant'.padEnd(w)}${[...KINDS, 'total'].map((k) => k.padStart(10)).join('')}`,
  ];
  for (const [name, runs] of Object.entries(perVariant)) {
    if (runs.length === 0) continue;
    lines.push(
      `${name.padEnd(w)}${[...KINDS.map((k) => cell(runs.map((c) => c[k]))), cell(runs.map(totalOf))].map((x) => x.padStart(10)).join('')}`,
    );
  }
  return lines;
}
