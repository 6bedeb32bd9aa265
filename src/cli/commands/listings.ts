/** The read-only listing commands: generations, snapshots, wal, databases. */
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { describeError } from '../../errors.js';
import { collect } from '../../client/replica-client.js';
import { generationRows, listReplica, type NamedReplica } from '../../replica/listing.js';
import { formatLag, formatTable, formatTimestamp } from '../format.js';
import type { CliIo, RunContext } from '../io.js';
import type { ConfigFlags } from '../target.js';

/** The config machinery (YAML, clients) is loaded when a command runs, not for `--help`. */
const target = () => import('../target.js');

interface ListFlags extends ConfigFlags {
  replica?: string;
  generation?: string;
}

/** Runs `fn` for every replica; a failing replica is reported and the command ends non-zero after the rest. */
async function eachReplica<T>(io: CliIo, ctx: RunContext, replicas: readonly NamedReplica[], fn: (r: NamedReplica) => Promise<T[]>): Promise<T[]> {
  const out: T[] = [];
  let failed = 0;
  for (const r of replicas) {
    try {
      out.push(...(await fn(r)));
    } catch (err) {
      failed++;
      io.stderr.write(`error: ${describeError(err)}\n`);
    }
  }
  if (failed > 0) ctx.exitCode = 1;
  return out;
}

function addConfigOptions(cmd: Command): Command {
  return cmd
    .option('--config <path>', 'config file (default: $LITESTREAM_CONFIG or /etc/litestream.yml)')
    .option('--no-expand-env', 'do not expand environment variables in the config');
}

export function registerListings(program: Command, io: CliIo, ctx: RunContext): void {
  addConfigOptions(program.command('generations'))
    .description('list the generations of a database or replica, with their time ranges')
    .argument('[target]', 'DB_PATH or REPLICA_URL')
    .option('--replica <name>', 'only this replica')
    .action(async (arg: string | undefined, flags: ListFlags) => {
      const t = await (await target()).resolveTarget(arg, flags, io);
      // Lag is measured from the database's last change (config mode) or from now (URL mode).
      let dbUpdatedAt = Date.now();
      if (t.db) {
        const times = await Promise.all(
          [t.db.path, `${t.db.path}-wal`].map((p) => stat(p).then((s) => s.mtimeMs, () => undefined)),
        );
        const known = times.filter((x): x is number => x !== undefined);
        if (known.length > 0) dbUpdatedAt = Math.max(...known);
      }
      const rows = await eachReplica(io, ctx, t.replicas, async (r) => generationRows(await listReplica(r, { signal: io.signal })));
      io.stdout.write(
        formatTable(
          ['name', 'generation', 'lag', 'start', 'end'],
          rows.map((g) => [g.replica, g.generation, formatLag(dbUpdatedAt - g.end.getTime()), formatTimestamp(g.start), formatTimestamp(g.end)]),
        ),
      );
    });

  addConfigOptions(program.command('snapshots'))
    .description('list the snapshots of a database or replica')
    .argument('[target]', 'DB_PATH or REPLICA_URL')
    .option('--replica <name>', 'only this replica')
    .action(async (arg: string | undefined, flags: ListFlags) => {
      const t = await (await target()).resolveTarget(arg, flags, io);
      const rows = await eachReplica(io, ctx, t.replicas, async (r) => {
        const gens = await r.client.generations({ signal: io.signal });
        const out = [];
        for (const g of gens) out.push(...(await collect(r.client.snapshots(g, { signal: io.signal }))).map((s) => ({ r, s })));
        return out;
      });
      rows.sort((a, b) => (a.s.generation < b.s.generation ? -1 : a.s.generation > b.s.generation ? 1 : a.s.index - b.s.index));
      io.stdout.write(
        formatTable(
          ['replica', 'generation', 'index', 'size', 'created'],
          rows.map(({ r, s }) => [r.name, s.generation, String(s.index), String(s.size), formatTimestamp(s.createdAt)]),
        ),
      );
    });

  addConfigOptions(program.command('wal'))
    .description('list the WAL segments of a database or replica')
    .argument('[target]', 'DB_PATH or REPLICA_URL')
    .option('--replica <name>', 'only this replica')
    .option('--generation <name>', 'only this generation')
    .action(async (arg: string | undefined, flags: ListFlags) => {
      const t = await (await target()).resolveTarget(arg, flags, io);
      const rows = await eachReplica(io, ctx, t.replicas, async (r) => {
        let gens = await r.client.generations({ signal: io.signal });
        if (flags.generation !== undefined) gens = gens.filter((g) => g === flags.generation);
        const out = [];
        for (const g of gens) out.push(...(await collect(r.client.walSegments(g, { signal: io.signal }))).map((s) => ({ r, s })));
        return out;
      });
      io.stdout.write(
        formatTable(
          ['replica', 'generation', 'index', 'offset', 'size', 'created'],
          rows.map(({ r, s }) => [r.name, s.generation, String(s.index), String(s.offset), String(s.size), formatTimestamp(s.createdAt)]),
        ),
      );
    });

  addConfigOptions(program.command('databases'))
    .description('list the databases in the config file')
    .action(async (flags: ConfigFlags) => {
      const { loadCliConfig } = await target();
      const { replicaName } = await import('../../config/config.js');
      const config = await loadCliConfig(flags, io);
      io.stdout.write(formatTable(['path', 'replicas'], config.dbs.map((db) => [db.path, db.replicas.map(replicaName).join(',')])));
    });
}
