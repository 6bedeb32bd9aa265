/**
 * litestream.yml: loading, environment expansion, validation into typed objects (docs/config.md). Litestream
 * v0.3.13 semantics, except where a comment says otherwise. The library never reads `process`: env,
 * cwd and the home directory are passed in. Every error names the file and the place
 * ("config /etc/litestream.yml: dbs[0].replicas[1]: …") and never quotes a secret.
 */
import { readFile } from 'node:fs/promises';
import { describeError, errnoCode, NotFoundError, ReplicateError } from '../errors.js';
import { DEFAULT_CONFIG_PATH, MIN_LEASE_TTL_MS } from './defaults.js';
import { expandEnv, type Env } from './env-expand.js';
import { resolveReplicaLocation, withoutUndefined } from './replica-resolve.js';
import { absolutePath, isUrl } from './replica-url.js';
import { isReplicaType, LOG_LEVELS, type Config, type DbConfig, type LoggingConfig, type LogLevel, type ReplicaConfig } from './types.js';
import { Fields, isNull, parseYaml } from './yaml-values.js';
import { listShapeProblems } from '../internal/age-keys.js';

export interface ParseOptions {
  /** False for `-no-expand-env`: `$VAR` stays literal. */
  expandEnv: boolean;
  env: Env;
  cwd: string;
  homeDir: string;
  /** Where the text came from, for messages and `Config.path`. */
  sourcePath: string;
}

export interface LoadOptions {
  /** `-config`; else $LITESTREAM_CONFIG; else /etc/litestream.yml. */
  path?: string;
  expandEnv: boolean;
  env: Env;
  cwd: string;
  homeDir: string;
}

export { DEFAULT_CONFIG_PATH };

const TOP_KEYS = ['dbs', 'exec', 'addr', 'health-max-lag', 'access-key-id', 'secret-access-key', 'logging'] as const;
const LOGGING_KEYS = ['level', 'type', 'stderr'] as const;
const DB_KEYS = [
  'path',
  'meta-path',
  'monitor-interval',
  'checkpoint-interval',
  'min-checkpoint-page-count',
  'max-checkpoint-page-count',
  'max-shadow-wal-size',
  'continue-after-restore',
  'replicas',
] as const;
const REPLICA_KEYS = [
  'type',
  'name',
  'url',
  'path',
  'sync-interval',
  'snapshot-interval',
  'retention',
  'retention-check-interval',
  'validation-interval',
  'bucket',
  'region',
  'endpoint',
  'force-path-style',
  'skip-verify',
  'checksums',
  'access-key-id',
  'secret-access-key',
  'account-name',
  'account-key',
  'host',
  'user',
  'password',
  'key-path',
  'age',
  'lease',
  'lease-ttl',
  'host-key',
  'known-hosts-path',
  'insecure-ignore-host-key',
] as const;
const AGE_KEYS = ['identities', 'recipients'] as const;

interface Credentials {
  accessKeyId?: string;
  secretAccessKey?: string;
}

interface Ctx {
  opts: ParseOptions;
  warnings: string[];
  creds: Credentials;
}

/** Runs `fn`, prefixing the place to the message of any ReplicateError it throws (URL errors become CONFIG). */
function at<T>(where: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof ReplicateError)) throw err;
    const code = err.code === 'INVALID_ARGUMENT' ? 'CONFIG' : err.code;
    throw new ReplicateError(code, `${where}: ${err.message}`, { cause: err.cause ?? err, details: err.details });
  }
}

/** Parses and validates litestream.yml text. Throws ReplicateError('CONFIG' | 'UNKNOWN_REPLICA_TYPE'). */
export function parseConfig(text: string, opts: ParseOptions): Config {
  const src = `config ${opts.sourcePath}`;
  const expanded = opts.expandEnv ? expandEnv(text, opts.env) : text;
  const { root, warnings } = parseYaml(expanded, src);
  const top = Fields.of(root, src);
  top.reportUnknown(TOP_KEYS, warnings);

  const creds: Credentials = withoutUndefined({ accessKeyId: top.str('access-key-id'), secretAccessKey: top.str('secret-access-key') });
  const ctx: Ctx = { opts, warnings, creds };
  const dbs = top.list('dbs').map((d, i) => parseDb(d, `${src}: dbs[${i}]`, ctx));

  const seen = new Map<string, number>();
  dbs.forEach((db, i) => {
    const first = seen.get(db.path);
    if (first !== undefined) warnings.push(`${src}: dbs[${i}]: database ${db.path} is listed twice (also dbs[${first}])`);
    else seen.set(db.path, i);
  });

  return withoutUndefined({
    path: opts.sourcePath,
    dbs,
    exec: top.str('exec'),
    addr: top.str('addr'),
    healthMaxLagMs: healthMaxLag(top.duration('health-max-lag'), src),
    ...creds,
    logging: parseLogging(top.obj.logging, `${src}: logging`, warnings),
    warnings,
  });
}

/** A threshold of 0 or less would report every replica as behind all the time. */
function healthMaxLag(ms: number | undefined, src: string): number | undefined {
  if (ms !== undefined && !(ms > 0)) throw new ReplicateError('CONFIG', `${src}: health-max-lag must be a positive duration`);
  return ms;
}

function parseLogging(raw: unknown, where: string, warnings: string[]): LoggingConfig {
  const f = Fields.of(raw, where);
  f.reportUnknown(LOGGING_KEYS, warnings);
  // Litestream: case-insensitive, "warning" is "warn", anything else is info.
  const levelText = f.str('level');
  let level: LogLevel = 'info';
  if (levelText !== undefined) {
    const l = levelText.toLowerCase();
    if (l === 'warning') level = 'warn';
    else if ((LOG_LEVELS as readonly string[]).includes(l)) level = l as LogLevel;
    else warnings.push(`${where}: level: unknown level ${JSON.stringify(levelText)}, using info`);
  }
  // Litestream panics on any type but "text", "json" or empty; we say so instead.
  const typeText = (f.str('type') ?? 'text').toLowerCase();
  if (typeText !== 'text' && typeText !== 'json') throw f.fail('type', `want "text" or "json", got ${JSON.stringify(typeText)}`);
  return { level, type: typeText, stderr: f.bool('stderr') ?? false };
}

function parseDb(raw: unknown, where: string, ctx: Ctx): DbConfig {
  const f = Fields.of(raw, where);
  f.reportUnknown(DB_KEYS, ctx.warnings);
  const { cwd, homeDir } = ctx.opts;
  const path = f.str('path');
  // Litestream would take a missing path as the working directory.
  if (path === undefined) throw f.fail('path', 'database path required');
  const minCheckpointPageCount = f.int('min-checkpoint-page-count');
  if (minCheckpointPageCount !== undefined && minCheckpointPageCount <= 0) {
    throw f.fail('min-checkpoint-page-count', 'must be greater than 0 (minimum checkpoint page count required)');
  }
  const metaPath = f.str('meta-path');
  const db: DbConfig = withoutUndefined({
    path: at(where, () => absolutePath(path, cwd, homeDir)),
    // Litestream uses meta-path as written; making it absolute here changes nothing for relative paths
    // and expands `~`, which Litestream would have turned into a directory named "~".
    metaPath: metaPath === undefined ? undefined : at(where, () => absolutePath(metaPath, cwd, homeDir)),
    monitorIntervalMs: f.duration('monitor-interval'),
    checkpointIntervalMs: f.duration('checkpoint-interval'),
    minCheckpointPageCount,
    maxCheckpointPageCount: f.int('max-checkpoint-page-count'),
    maxShadowWalBytes: f.size('max-shadow-wal-size'),
    continueAfterRestore: f.bool('continue-after-restore'),
    replicas: f.list('replicas').map((r, i) => parseReplica(r, `${where}.replicas[${i}]`, ctx)),
  });

  const names = new Map<string, number>();
  db.replicas.forEach((r, i) => {
    const n = replicaName(r);
    const first = names.get(n);
    if (first !== undefined)
      ctx.warnings.push(
        `${where}.replicas[${i}]: replica name ${JSON.stringify(n)} is used twice (also replicas[${first}]); give each a name`,
      );
    else names.set(n, i);
  });
  return db;
}

function parseReplica(raw: unknown, where: string, ctx: Ctx): ReplicaConfig {
  const f = Fields.of(raw, where);
  f.reportUnknown(REPLICA_KEYS, ctx.warnings);
  const url = f.str('url');
  const path = f.str('path');
  // The path is not quoted: a URL may carry a password.
  if (path !== undefined && isUrl(path)) throw f.fail('path', 'replica path cannot be a url, please use the "url" field instead');

  // Type: the URL's scheme, else `type:`, else "file". Lower-cased (Litestream would reject "S3").
  const typeField = f.str('type')?.toLowerCase();
  const scheme = url === undefined ? undefined : /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  const type = scheme ?? typeField ?? 'file';
  if (!isReplicaType(type)) {
    throw new ReplicateError('UNKNOWN_REPLICA_TYPE', `${where}: unknown replica type in config: ${JSON.stringify(type)}`, {
      details: { type, where },
    });
  }
  if (scheme !== undefined && typeField !== undefined && typeField !== scheme) {
    ctx.warnings.push(`${where}: type: ${JSON.stringify(typeField)} ignored, the url makes this a ${type} replica`);
  }

  const ageFields = isNull(f.obj.age) ? undefined : Fields.of(f.obj.age, `${where}.age`);
  ageFields?.reportUnknown(AGE_KEYS, ctx.warnings);
  const identities = ageFields?.strings('identities') ?? [];
  const recipients = ageFields?.strings('recipients') ?? [];
  // Their form only (no age library here); loadConfig checks their checksums. Never quoted: secrets.
  const ageProblem = [
    ...listShapeProblems('identity', 'identities', identities),
    ...listShapeProblems('recipient', 'recipients', recipients),
  ][0];
  if (ageProblem !== undefined) throw new ReplicateError('CONFIG', `${where}.age.${ageProblem}`, { details: { key: 'age' } });

  const cfg: ReplicaConfig = {
    type,
    name: f.str('name'),
    url,
    path,
    syncIntervalMs: f.duration('sync-interval'),
    snapshotIntervalMs: f.duration('snapshot-interval'),
    retentionMs: f.duration('retention'),
    retentionCheckIntervalMs: f.duration('retention-check-interval'),
    validationIntervalMs: f.duration('validation-interval'),
    bucket: f.str('bucket'),
    region: f.str('region'),
    endpoint: f.str('endpoint'),
    forcePathStyle: f.bool('force-path-style'),
    skipVerify: f.bool('skip-verify'),
    checksums: checksumsOf(f),
    accessKeyId: f.str('access-key-id') ?? ctx.creds.accessKeyId,
    secretAccessKey: f.str('secret-access-key') ?? ctx.creds.secretAccessKey,
    accountName: f.str('account-name'),
    accountKey: f.str('account-key'),
    host: f.str('host'),
    user: f.str('user'),
    password: f.str('password'),
    keyPath: f.str('key-path'),
    hostKey: f.str('host-key'),
    knownHostsPath: f.str('known-hosts-path'),
    insecureIgnoreHostKey: f.bool('insecure-ignore-host-key'),
    age: identities.length + recipients.length > 0 ? { identities, recipients } : undefined,
    lease: f.bool('lease'),
    leaseTtlMs: f.duration('lease-ttl'),
  };
  if (cfg.insecureIgnoreHostKey === true) {
    ctx.warnings.push(
      `${where}: insecure-ignore-host-key: the sftp server's host key is not verified, so anyone on the network path can pose as the server and read or change the replica; use it for test setups only (set host-key or known-hosts-path instead)`,
    );
  }
  // Renewals every TTL/3 need time to reach the store (and a TTL in seconds written as "30" would be 30 ns).
  if (cfg.leaseTtlMs !== undefined && cfg.leaseTtlMs < MIN_LEASE_TTL_MS)
    throw f.fail('lease-ttl', `must be at least ${MIN_LEASE_TTL_MS}ms`);
  return at(where, () => resolveReplicaLocation(cfg, ctx.opts.cwd, ctx.opts.homeDir));
}

/** The config path: explicit, else $LITESTREAM_CONFIG, else /etc/litestream.yml; `~` expanded, absolute. */
export function configPath(opts: Pick<LoadOptions, 'path' | 'env' | 'cwd' | 'homeDir'>): string {
  const p = opts.path || opts.env.LITESTREAM_CONFIG || DEFAULT_CONFIG_PATH;
  return absolutePath(p, opts.cwd, opts.homeDir);
}

/** Reads and parses the config file. A missing file is ReplicateError('CONFIG') with details.reason 'not-found'. */
export async function loadConfig(opts: LoadOptions): Promise<Config> {
  const path = configPath(opts);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new ReplicateError('CONFIG', `config file not found: ${path}`, { cause: err, details: { path, reason: 'not-found' } });
    }
    throw new ReplicateError('CONFIG', `reading config ${path}: ${describeError(err)}`, { cause: err, details: { path } });
  }
  const config = parseConfig(text, { expandEnv: opts.expandEnv, env: opts.env, cwd: opts.cwd, homeDir: opts.homeDir, sourcePath: path });
  await checkAgeKeys(config);
  return config;
}

/**
 * Checks every age key with the age library (checksums; parseConfig checked their form), as Litestream
 * does for every command that reads the config. The library is loaded only when a replica has keys.
 */
async function checkAgeKeys(config: Config): Promise<void> {
  if (!config.dbs.some((d) => d.replicas.some((r) => r.age))) return;
  const { parseAgeKeys } = await import('../internal/age-stream.js');
  config.dbs.forEach((d, i) =>
    d.replicas.forEach((r, j) => {
      if (!r.age) return;
      try {
        parseAgeKeys(r.age);
      } catch (err) {
        if (!(err instanceof ReplicateError)) throw err;
        throw new ReplicateError('CONFIG', `config ${config.path}: dbs[${i}].replicas[${j}].${err.message}`, {
          details: { ...err.details, path: config.path },
        });
      }
    }),
  );
}

/** The config entry for a database path from the command line: made absolute (`~` expanded), matched exactly. */
export function findDb(config: Config, dbPath: string, cwd: string, homeDir: string): DbConfig {
  const abs = absolutePath(dbPath, cwd, homeDir);
  const db = config.dbs.find((d) => d.path === abs);
  if (!db) throw new NotFoundError(`database not found in config: ${abs}`, { details: { path: abs, config: config.path } });
  return db;
}

/** A replica's name: `name:`, else its type. */
export function replicaName(r: Pick<ReplicaConfig, 'name' | 'type'>): string {
  return r.name ?? r.type;
}

/** stn-replicate's own key (not Litestream's): `checksums: when-required` for stores that reject trailing checksums. */
function checksumsOf(f: {
  str(key: string): string | undefined;
  fail(key: string, detail: string): Error;
}): 'when-supported' | 'when-required' | undefined {
  const v = f.str('checksums')?.toLowerCase();
  if (v === undefined) return undefined;
  if (v !== 'when-supported' && v !== 'when-required')
    throw f.fail('checksums', `want "when-supported" or "when-required", got ${JSON.stringify(v)}`);
  return v;
}
