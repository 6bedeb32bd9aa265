/**
 * `lease`: who holds the lease of each replica of a database (or of one replica URL), and `-break
 * INSTANCE` to give up by hand a lease whose holder is gone for good (see docs/lease.md). Breaking names
 * the holder's instance id as shown by the listing, so a lease that moved on meanwhile is left alone.
 */
import type { Command } from 'commander';
import { supportsLease } from '../../client/replica-client.js';
import { describeError, ReplicateError } from '../../errors.js';
import { describeHolder } from '../../lease/lease-record.js';
import type { ReplicaSource } from '../../replica/listing.js';
import { formatTable } from '../format.js';
import type { CliIo, RunContext } from '../io.js';
import type { ConfigFlags } from '../target.js';

interface LeaseFlags extends ConfigFlags {
  replica?: string;
  break?: string;
}

export function registerLease(program: Command, io: CliIo, ctx: RunContext): void {
  program
    .command('lease')
    .description('show who holds the lease of each replica; -break INSTANCE releases a stale one by hand')
    .argument('[target]', 'DB_PATH or REPLICA_URL')
    .option('--config <path>', 'config file (default: $LITESTREAM_CONFIG or /etc/litestream.yml)')
    .option('--no-expand-env', 'do not expand environment variables in the config')
    .option('--replica <name>', 'only this replica')
    .option('--break <instance>', "release the lease if (and only if) it is held by this instance id (the 'instance' column)")
    .action(async (arg: string | undefined, flags: LeaseFlags) => {
      const t = await (await import('../target.js')).resolveTarget(arg, flags, io);
      ctx.exitCode = flags.break !== undefined ? await breakLeases(t.replicas, flags.break, io) : await showLeases(t.replicas, io);
    });
}

async function showLeases(replicas: readonly ReplicaSource[], io: CliIo): Promise<number> {
  const { readLease } = await import('../../lease/replica-lease.js');
  const rows: string[][] = [];
  let code = 0;
  for (const r of replicas) {
    const none = (status: string) => [r.name, status, '', '', '', '', '', '', ''];
    if (!supportsLease(r.client)) {
      rows.push(none('no atomic lease on this backend'));
      continue;
    }
    try {
      const state = await readLease(r.client);
      const h = state?.record.holder;
      if (!state) rows.push(none('none'));
      else if (!h) rows.push([r.name, 'released', '', '', '', '', state.record.releasedAt ?? '', '', `${state.record.ttlMs / 1000}s`]);
      else
        rows.push([
          r.name,
          'held',
          h.host,
          String(h.pid),
          h.instance,
          h.generation ?? '',
          state.record.acquiredAt,
          state.record.renewedAt,
          `${state.record.ttlMs / 1000}s`,
        ]);
    } catch (err) {
      code = 1;
      io.stderr.write(`error: replica ${r.name}: ${describeError(err)}\n`);
    }
  }
  io.stdout.write(formatTable(['name', 'status', 'host', 'pid', 'instance', 'generation', 'since', 'renewed', 'ttl'], rows));
  return code;
}

async function breakLeases(replicas: readonly ReplicaSource[], instance: string, io: CliIo): Promise<number> {
  const { breakLease } = await import('../../lease/replica-lease.js');
  let broken = 0;
  let failed = 0;
  for (const r of replicas) {
    try {
      if (!supportsLease(r.client)) throw new ReplicateError('LEASE_UNSUPPORTED', `${r.client.type} replicas have no atomic lease`);
      const was = await breakLease(r.client, instance);
      broken++;
      io.stdout.write(
        `replica ${r.name}: lease broken (was held by ${describeHolder(was.record.holder!)} since ${was.record.acquiredAt}, last renewed ${was.record.renewedAt})\n`,
      );
    } catch (err) {
      failed++;
      io.stderr.write(`error: replica ${r.name}: ${describeError(err)}\n`);
    }
  }
  return failed > 0 || broken === 0 ? 1 : 0;
}
