/**
 * `replicate`: follow one or more databases and ship their changes to their replicas until SIGINT or
 * SIGTERM (or, with -exec, until the app exits). Its flags are here; what it does is in replicate-run.ts,
 * loaded when the command runs, so that other commands (a restore, a listing) do not load the shipper's
 * command code, child processes, logs and leases at start-up.
 */
import type { Command } from 'commander';
import type { CliIo, RunContext } from '../io.js';

export interface ReplicateFlags {
  config?: string;
  expandEnv?: boolean;
  exec?: string;
  restoreIfDbNotExists?: boolean;
  logLevel?: string;
}

export function registerReplicate(program: Command, io: CliIo, ctx: RunContext): void {
  program
    .command('replicate')
    .description('continuously replicate databases to their replicas (DB_PATH REPLICA_URL... or -config)')
    .argument('[db]', 'database path (with one or more replica URLs), or none to use the config')
    .argument('[replicas...]', 'replica URLs')
    .option('--config <path>', 'config file (default: $LITESTREAM_CONFIG or /etc/litestream.yml)')
    .option('--no-expand-env', 'do not expand environment variables in the config')
    .option('--exec <cmd>', 'run this command once replication has started; stop when it exits, with its exit code')
    .option(
      '--restore-if-db-not-exists',
      'first restore each database whose file is missing from its replicas (none there at all: start fresh); any other failure exits non-zero before replicating',
    )
    .action(async (db: string | undefined, urls: string[], flags: ReplicateFlags) => {
      const { replicate } = await import('./replicate-run.js');
      ctx.exitCode = await replicate(db, urls, flags, io);
    });
}
