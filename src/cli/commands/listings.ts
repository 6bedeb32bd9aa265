/** The read-only listing commands: generations, snapshots, wal, databases. */
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { describeError } from '../../errors.js';
import { collect } from '../../client/replica-client.js';
import type { GenerationRow, ReplicaSource } from '../../replica/listing.js';
import { formatLag, formatTable, formatTimestampMs } from '../format.js';
import type { CliIo, RunContext } from '../io.js';
import type { ConfigFlags } from '../target.js';

/**
 * The config machinery (YAML, clients) is loaded when a command runs, not for `--help`; the listing and the
 * meta directory when `generations` runs, not at every start of another command (a restore).
 */
const target = () => import('../target.js');

interface ListFlags extends ConfigFlags {
  replica?: string;
  generation?: string;
}

/** Runs `fn` for every replica; a failing replica is reported and the command ends non-zero after the rest. */
async function eachReplica<T>(
  io: CliIo,
  ctx: RunContext,
  replicas: readonly ReplicaSource[],
  fn: (r: ReplicaSource) => Promise<T[]>,
): Promise<T[]> {
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

/**
 * The generation the local database is on, from its meta directory; undefined when there is none or it
 * cannot be read (the listing then marks the newest generation instead).
 */
async function localGeneration(metaPath: string): Promise<string | undefined> {
  const { MetaDir } = await import('../../meta/meta-dir.js');
  return new MetaDir(metaPath).readGeneration().catch(() => undefined);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function addConfigOptions(cmd: Command): Command {
  return cmd
    .option('--config <path>', 'config file (default: $LITESTREAM_CONFIG or /etc/litestream.yml)')
    .option('--no-expand-env', 'do not expand environment variables in the config');
}

export function registerListings(program: Command, io: CliIo, ctx: RunContext): void {
  addConfigOptions(program.command('generations'))
    .description('list the generations of a database or replica, oldest first, with the time range each restores')
    .argument('[target]', 'DB_PATH or REPLICA_URL')
    .option('--replica <name>', 'only this replica')
    .action(async (arg: string | undefined, flags: ListFlags) => {
      const t = await (await target()).resolveTarget(arg, flags, io);
      // Lag is measured from the database's last change (config mode) or from now (URL mode).
      let dbUpdatedAt = Date.now();
      if (t.db) {
        const times = await Promise.all(
          [t.db.path, `${t.db.path}-wal`].map((p) =>
            stat(p).then(
              (s) => s.mtimeMs,
              () => undefined,
            ),
          ),
        );
        const known = times.filter((x): x is number => x !== undefined);
        if (known.length > 0) dbUpdatedAt = Math.max(...known);
      }
      const [{ generationRows, listReplica }, { defaultMetaPath }] = await Promise.all([
        import('../../replica/listing.js'),
        import('../../meta/meta-dir.js'),
      ]);
      const local = t.db ? await localGeneration(t.db.metaPath ?? defaultMetaPath(t.db.path)) : undefined;
      const rows = await eachReplica(io, ctx, t.replicas, async (r) => {
        // Oldest first within each replica (Litestream lists by name, which for our names is newest first).
        const gens = generationRows(await listReplica(r, { signal: io.signal })).sort(
          (a, b) => a.start.getTime() - b.start.getTime() || cmp(a.generation, b.generation),
        );
        const newest = gens.reduce<GenerationRow | undefined>(
          (best, g) => (g.restorableFrom && (!best || g.end >= best.end) ? g : best),
          undefined,
        );
        return gens.map((g) => ({ g, current: local !== undefined ? g.generation === local : g === newest }));
      });
      io.stdout.write(
        formatTable(
          ['name', 'generation', 'lag', 'start', 'end', 'status'],
          rows.map(({ g, current }) => [
            g.replica,
            g.generation,
            // A clock step (or a database file touched from another machine) can put the database's last
            // change before the replica's last upload: that is no lag, not a negative one.
            formatLag(Math.max(0, dbUpdatedAt - g.end.getTime())),
            formatTimestampMs(g.restorableFrom ?? g.start),
            formatTimestampMs(g.end),
            current ? 'current' : g.restorableFrom ? '' : 'no-snapshot',
          ]),
        ),
      );
      // The explanation goes to stderr so that stdout stays a table for scripts.
      if (rows.length > 0) {
        const listed = rows.some((x) => x.current);
        const which =
          local !== undefined
            ? `current: the generation ${t.db!.path} is on (${local}${listed ? '' : ', in no replica yet'})`
            : 'current: the newest generation of each replica (a restore of the latest state takes the newest across replicas)';
        io.stderr.write(`restorable: any -timestamp from a generation's start to its end (a later one restores its end); ${which}\n`);
      }
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
          rows.map(({ r, s }) => [r.name, s.generation, String(s.index), String(s.size), formatTimestampMs(s.createdAt)]),
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
          rows.map(({ r, s }) => [r.name, s.generation, String(s.index), String(s.offset), String(s.size), formatTimestampMs(s.createdAt)]),
        ),
      );
    });

  addConfigOptions(program.command('databases'))
    .description('list the databases in the config file')
    .action(async (flags: ConfigFlags) => {
      const { loadCliConfig } = await target();
      const { replicaName } = await import('../../config/config.js');
      const config = await loadCliConfig(flags, io);
      io.stdout.write(
        formatTable(
          ['path', 'replicas'],
          config.dbs.map((db) => [db.path, db.replicas.map(replicaName).join(',')]),
        ),
      );
    });
}
