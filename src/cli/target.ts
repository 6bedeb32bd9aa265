/**
 * Turns a command's DB_PATH or REPLICA_URL argument into the replicas to read, the way Litestream does:
 * a URL names one replica directly (no config); a path is looked up in the config file.
 */
import { isReplicateError, NotFoundError, ReplicateError } from '../errors.js';
import { buildReplicaClient, findDb, isUrl, loadConfig, replicaFromUrl, replicaName, type Config, type DbConfig } from '../config/index.js';
import type { ReplicaSource } from '../replica/listing.js';
import type { CliIo } from './io.js';

export interface ConfigFlags {
  config?: string;
  expandEnv?: boolean; // commander's negatable --no-expand-env
}

export interface Target {
  /** The replicas to read, in config order. */
  replicas: ReplicaSource[];
  /** Set in config mode. */
  db?: DbConfig;
  config?: Config;
}

/**
 * Loads the config as every command does. A missing file names the ways to give one (the library's
 * message cannot: it knows no command line). Unless `reportWarnings` is false (replicate logs them
 * through its logger), what the config would silently ignore is printed on stderr as `warning:` lines,
 * so that an unknown key is seen whichever command reads the file.
 */
export async function loadCliConfig(flags: ConfigFlags, io: CliIo, opts: { reportWarnings?: boolean } = {}): Promise<Config> {
  let config: Config;
  try {
    config = await loadConfig({ path: flags.config, expandEnv: flags.expandEnv !== false, env: io.env, cwd: io.cwd, homeDir: io.homeDir });
  } catch (err) {
    if (!isReplicateError(err, 'CONFIG') || err.details.reason !== 'not-found') throw err;
    const from = flags.config
      ? 'given with -config'
      : io.env.LITESTREAM_CONFIG
        ? 'from $LITESTREAM_CONFIG; -config PATH names another file'
        : 'the default; name the file with -config PATH or set LITESTREAM_CONFIG';
    throw new ReplicateError('CONFIG', `${err.message} (${from})`, { cause: err.cause, details: err.details });
  }
  if (opts.reportWarnings !== false) for (const w of config.warnings) io.stderr.write(`warning: ${w}\n`);
  return config;
}

export async function resolveTarget(arg: string | undefined, flags: ConfigFlags & { replica?: string }, io: CliIo): Promise<Target> {
  if (arg === undefined || arg === '') throw new ReplicateError('INVALID_ARGUMENT', 'database path or replica URL required');
  if (isUrl(arg)) {
    if (flags.config !== undefined) throw new ReplicateError('INVALID_ARGUMENT', 'cannot specify a replica URL and the -config flag');
    const r = replicaFromUrl(arg, io.cwd, io.homeDir);
    return { replicas: [{ name: replicaName(r), client: buildReplicaClient(r, io.env, io.homeDir) }] };
  }
  const config = await loadCliConfig(flags, io);
  const db = findDb(config, arg, io.cwd, io.homeDir);
  let configured = db.replicas;
  if (flags.replica !== undefined) {
    configured = configured.filter((r) => replicaName(r) === flags.replica);
    if (configured.length === 0) {
      throw new NotFoundError(`replica "${flags.replica}" not found for database "${db.path}"`);
    }
  }
  const replicas = configured.map((r) => ({ name: replicaName(r), client: buildReplicaClient(r, io.env, io.homeDir), age: r.age }));
  return { replicas, db, config };
}
