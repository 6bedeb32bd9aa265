/**
 * Turns a command's DB_PATH or REPLICA_URL argument into the replicas to read, the way Litestream does:
 * a URL names one replica directly (no config); a path is looked up in the config file.
 */
import { ReplicateError } from '../errors.js';
import { buildReplicaClient, findDb, isUrl, loadConfig, replicaFromUrl, replicaName, type Config, type DbConfig } from '../config/index.js';
import type { NamedReplica } from '../replica/listing.js';
import type { CliIo } from './io.js';

export interface ConfigFlags {
  config?: string;
  expandEnv?: boolean; // commander's negatable --no-expand-env
}

export interface Target {
  /** The replicas to read, in config order. */
  replicas: NamedReplica[];
  /** Set in config mode. */
  db?: DbConfig;
  config?: Config;
}

export async function loadCliConfig(flags: ConfigFlags, io: CliIo): Promise<Config> {
  return loadConfig({ path: flags.config, expandEnv: flags.expandEnv !== false, env: io.env, cwd: io.cwd, homeDir: io.homeDir });
}

export async function resolveTarget(arg: string | undefined, flags: ConfigFlags & { replica?: string }, io: CliIo): Promise<Target> {
  if (arg === undefined || arg === '') throw new ReplicateError('INVALID_ARGUMENT', 'database path or replica URL required');
  if (isUrl(arg)) {
    if (flags.config !== undefined) throw new ReplicateError('INVALID_ARGUMENT', 'cannot specify a replica URL and the -config flag');
    const r = replicaFromUrl(arg, io.cwd, io.homeDir);
    return { replicas: [{ name: replicaName(r), client: buildReplicaClient(r, io.env) }] };
  }
  const config = await loadCliConfig(flags, io);
  const db = findDb(config, arg, io.cwd, io.homeDir);
  let configured = db.replicas;
  if (flags.replica !== undefined) {
    configured = configured.filter((r) => replicaName(r) === flags.replica);
    if (configured.length === 0) {
      throw new ReplicateError('NOT_FOUND', `replica "${flags.replica}" not found for database "${db.path}"`);
    }
  }
  const replicas = configured.map((r) => ({ name: replicaName(r), client: buildReplicaClient(r, io.env) }));
  return { replicas, db, config };
}
