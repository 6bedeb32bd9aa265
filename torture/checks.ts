/**
 * The questions asked after a round (and while waiting for a point in time): restore with either tool,
 * latest or at a timestamp, and compare the result with what the application had then: content digest,
 * the ledger's keys, `PRAGMA integrity_check`, and the trigger-maintained counts.
 */
import { rmSync } from 'node:fs';
import type { DbFacts } from './digest.js';
import { diffKeys } from './ledger.js';
import type { ProcessSet } from './procs.js';
import type { ToolPaths } from './replicator.js';

export type Tool = 'ours' | 'litestream';

/**
 * `exact`: same content and integrity ok. `nomatch`: Litestream v0.3.13's "no matching backups found"
 * for a timestamp outside every generation's first..last object (its documented limit, counted apart).
 */
export type RestoreStatus = 'exact' | 'inexact' | 'corrupt' | 'error' | 'nomatch';

export interface RestoreOutcome {
  status: RestoreStatus;
  detail?: string;
}

export interface CheckContext {
  procs: ProcessSet;
  tools: ToolPaths;
  env: Record<string, string>;
  /** The restore/listing config (straight to the store). */
  config: string;
  db: string;
  facts(path: string, integrity: boolean): Promise<DbFacts>;
}

function sample(keys: string[]): string {
  return keys.length <= 5 ? keys.join(',') : `${keys.slice(0, 5).join(',')},…`;
}

export async function runRestore(ctx: CheckContext, tool: Tool, out: string, timestamp?: Date): Promise<{ ok: boolean; output: string }> {
  const args = ['restore', '-config', ctx.config, '-o', out, ...(timestamp ? ['-timestamp', timestamp.toISOString()] : []), ctx.db];
  const [cmd, argv] = tool === 'ours' ? [ctx.tools.nodePath, [ctx.tools.oursBin, ...args]] : [ctx.tools.litestreamBin, args];
  const r = await ctx.procs.run(`restore-${tool}`, cmd, argv, { env: ctx.env });
  return { ok: r.exit.code === 0, output: r.stdout };
}

/** Restores with `tool` and compares with `expected`; the output file is removed afterwards. */
export async function checkRestore(
  ctx: CheckContext,
  tool: Tool,
  out: string,
  expected: DbFacts,
  timestamp?: Date,
): Promise<RestoreOutcome> {
  try {
    const r = await runRestore(ctx, tool, out, timestamp);
    if (!r.ok) {
      const last = r.output.trim().split('\n').slice(-2).join(' | ');
      return { status: tool === 'litestream' && /no matching backups found/.test(r.output) ? 'nomatch' : 'error', detail: last };
    }
    let got: DbFacts;
    try {
      got = await ctx.facts(out, true);
    } catch (e) {
      return {
        status: 'corrupt',
        detail: String((e as Error).message)
          .split('\n')
          .slice(-2)
          .join(' | '),
      };
    }
    if (got.integrity !== 'ok') return { status: 'corrupt', detail: `integrity_check: ${got.integrity}` };
    if (got.inconsistent.length > 0) return { status: 'corrupt', detail: `trigger counts disagree for ${got.inconsistent.join(',')}` };
    if (got.digest === expected.digest) return { status: 'exact' };
    const d = diffKeys(new Set(expected.keys), got.keys);
    return {
      status: 'inexact',
      detail: `missing ${d.missing.length} [${sample(d.missing)}] extra ${d.extra.length} [${sample(d.extra)}] (other content differs if both are 0)`,
    };
  } finally {
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${out}${suffix}`, { force: true });
  }
}

/** The generations a listing shows (our `generations` command, which prints Litestream's table). */
export async function listGenerations(ctx: CheckContext): Promise<string[] | string> {
  const r = await ctx.procs.run('generations', ctx.tools.nodePath, [ctx.tools.oursBin, 'generations', '-config', ctx.config, ctx.db], {
    env: ctx.env,
  });
  if (r.exit.code !== 0) return `generations failed: ${r.stdout.trim().split('\n').slice(-1)[0]}`;
  return r.stdout
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/)[1] ?? '')
    .filter((g) => /^[0-9a-f]{16}$/.test(g));
}
