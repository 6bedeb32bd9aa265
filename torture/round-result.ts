/** What one round reports (also written to its directory as result.json). */
import type { RestoreOutcome } from './checks.js';
import type { GenerationEvent } from './replicator.js';
import type { ReplicatorSettings } from './schedule.js';
import type { Backend } from './store.js';
import type { WorkloadCounts } from './workload.js';

export interface PitResult {
  at: string;
  rows: number;
  ours: RestoreOutcome;
  litestream: RestoreOutcome;
}

export interface RoundResult {
  index: number;
  seed: number;
  backend: Backend;
  replicator: string;
  ok: boolean;
  aborted: boolean;
  failures: string[];
  /** The round's directory, when kept (failed, or --keep). */
  dir?: string;
  settings: ReplicatorSettings;
  durationMs: number;
  latest: { ours: RestoreOutcome; litestream: RestoreOutcome };
  pitr: PitResult[];
  /** Points in time that could not be recorded because the replica never caught up. */
  pitUnsettled: number;
  generations: { listed: number | null; logged: GenerationEvent[]; unexpected: number };
  checkpoints: { total: number; peakPerSecond: number };
  replicatorKills: number;
  replicatorBoots: number;
  replicatorErrorLines: number;
  outages: string[];
  appKills: number;
  ledger: { transactions: number; committedRows: number; liveRows: number; missing: number; extra: number; doomedSeen: number };
  workload: WorkloadCounts;
}
