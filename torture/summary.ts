/** The run's verdict: one machine-greppable line, and the same numbers (plus every round) as JSON. */
import type { RestoreOutcome } from './checks.js';
import type { RoundResult } from './round-result.js';

export interface RunSummary {
  replicator: string;
  seed: number;
  rounds: number;
  failedRounds: number;
  wallSeconds: number;
  backends: Record<string, number>;
  latestExact: { ours: number; litestream: number };
  corrupt: number;
  pitr: { total: number; oursExact: number; litestreamExact: number; litestreamNoMatch: number; unsettled: number };
  generations: {
    logged: number;
    listed: number;
    unexpected: number;
    maxPerRound: number;
    afterKill: number;
    reasons: Record<string, number>;
  };
  checkpointsPerSecondPeak: number;
  checkpoints: number;
  replicatorKills: number;
  outages: number;
  appKills: number;
  ledgerMismatches: number;
  failures: { round: number; seed: number; backend: string; dir?: string; failures: string[] }[];
}

const isCorrupt = (r: RestoreOutcome) => r.status === 'corrupt';

export function summarize(results: RoundResult[], replicator: string, seed: number, wallSeconds: number): RunSummary {
  const s: RunSummary = {
    replicator,
    seed,
    rounds: results.length,
    failedRounds: results.filter((r) => !r.ok).length,
    wallSeconds: Math.round(wallSeconds),
    backends: {},
    latestExact: { ours: 0, litestream: 0 },
    corrupt: 0,
    pitr: { total: 0, oursExact: 0, litestreamExact: 0, litestreamNoMatch: 0, unsettled: 0 },
    generations: { logged: 0, listed: 0, unexpected: 0, maxPerRound: 0, afterKill: 0, reasons: {} },
    checkpointsPerSecondPeak: 0,
    checkpoints: 0,
    replicatorKills: 0,
    outages: 0,
    appKills: 0,
    ledgerMismatches: 0,
    failures: [],
  };
  for (const r of results) {
    s.backends[r.backend] = (s.backends[r.backend] ?? 0) + 1;
    if (r.latest.ours.status === 'exact') s.latestExact.ours++;
    if (r.latest.litestream.status === 'exact') s.latestExact.litestream++;
    const outcomes = [r.latest.ours, r.latest.litestream, ...r.pitr.flatMap((p) => [p.ours, p.litestream])];
    s.corrupt += outcomes.filter(isCorrupt).length;
    s.pitr.total += r.pitr.length;
    s.pitr.oursExact += r.pitr.filter((p) => p.ours.status === 'exact').length;
    s.pitr.litestreamExact += r.pitr.filter((p) => p.litestream.status === 'exact').length;
    s.pitr.litestreamNoMatch += r.pitr.filter((p) => p.litestream.status === 'nomatch').length;
    s.pitr.unsettled += r.pitUnsettled;
    s.generations.logged += r.generations.logged.length;
    s.generations.listed += r.generations.listed ?? 0;
    s.generations.unexpected += r.generations.unexpected;
    s.generations.maxPerRound = Math.max(s.generations.maxPerRound, r.generations.logged.length);
    s.generations.afterKill += r.generations.logged.filter((g) => g.context === 'restart after SIGKILL').length;
    for (const g of r.generations.logged) {
      const key = `${g.expected ? 'expected' : 'UNEXPECTED'} (${g.context}): ${g.reason}`;
      s.generations.reasons[key] = (s.generations.reasons[key] ?? 0) + 1;
    }
    s.checkpointsPerSecondPeak = Math.max(s.checkpointsPerSecondPeak, r.checkpoints.peakPerSecond);
    s.checkpoints += r.checkpoints.total;
    s.replicatorKills += r.replicatorKills;
    s.outages += r.outages.length;
    s.appKills += r.appKills;
    if (r.ledger.missing + r.ledger.extra + r.ledger.doomedSeen > 0) s.ledgerMismatches++;
    if (!r.ok)
      s.failures.push({ round: r.index, seed: r.seed, backend: r.backend, ...(r.dir ? { dir: r.dir } : {}), failures: r.failures });
  }
  return s;
}

export function summaryLine(s: RunSummary): string {
  const n = s.rounds;
  return [
    `torture: replicator=${s.replicator} seed=${s.seed} rounds=${n} failed=${s.failedRounds} seconds=${s.wallSeconds}`,
    `backends=${Object.entries(s.backends)
      .map(([b, c]) => `${b}:${c}`)
      .join(',')}`,
    `latest exact ours=${s.latestExact.ours}/${n} litestream=${s.latestExact.litestream}/${n} corrupt=${s.corrupt}`,
    `pitr exact ours=${s.pitr.oursExact}/${s.pitr.total} litestream=${s.pitr.litestreamExact}/${s.pitr.total} (no match ${s.pitr.litestreamNoMatch}) unsettled=${s.pitr.unsettled}`,
    `ledger mismatches=${s.ledgerMismatches}`,
    `generations=${s.generations.logged} unexpected=${s.generations.unexpected} max/round=${s.generations.maxPerRound} new after kill=${s.generations.afterKill}/${s.replicatorKills}`,
    `checkpoints/s peak=${s.checkpointsPerSecondPeak}`,
    `replicator kills=${s.replicatorKills} outages=${s.outages} app kills=${s.appKills}`,
  ].join(' ');
}
