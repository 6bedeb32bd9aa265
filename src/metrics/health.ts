/**
 * The health check's verdict, from the replications' statuses: healthy while every replica's lag is at
 * most `maxLagMs`. A replica that fails but has nothing to upload (the database is idle) is not behind,
 * so it does not make the check fail; its last error is shown in the report.
 */
import type { ReplicationStatus } from '../replication-status.js';

export interface HealthReport {
  healthy: boolean;
  /** "ok"; "behind" when a replica's lag is over the threshold; "starting" before replication runs. */
  status: 'ok' | 'behind' | 'starting';
  maxLagSeconds: number;
  /** Every replica of every database, with its lag; `behind` marks those over the threshold. */
  replicas: { db: string; name: string; lagSeconds: number; behind: boolean; error?: string }[];
}

export function evaluateHealth(statuses: readonly ReplicationStatus[], maxLagMs: number): HealthReport {
  const maxLagSeconds = maxLagMs / 1000;
  const replicas = statuses.flatMap((s) =>
    s.replicas.map((r) => ({
      db: s.dbPath,
      name: r.name,
      lagSeconds: Math.round(r.lagSeconds * 1000) / 1000,
      behind: r.lagSeconds > maxLagSeconds,
      ...(r.error !== undefined ? { error: r.error } : {}),
    })),
  );
  const healthy = replicas.every((r) => !r.behind);
  return { healthy, status: healthy ? 'ok' : 'behind', maxLagSeconds, replicas };
}

/** The verdict before the replications have started (a start-up restore still running): not healthy. */
export function startingReport(maxLagMs: number): HealthReport {
  return { healthy: false, status: 'starting', maxLagSeconds: maxLagMs / 1000, replicas: [] };
}
