/**
 * litestream.yml: loading, environment expansion, validation into typed objects. "Unset" is undefined;
 * durations are milliseconds and say so in their names. The library never reads `process`: env, cwd
 * and the home directory are passed in.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { describeError, errnoCode, ReplicateError } from '../errors.js';
import { durationFromYaml } from './duration.js';
import { expandEnv } from './env-expand.js';
import { absolutePath, isUrl, parseReplicaUrl } from './replica-url.js';

export const REPLICA_TYPES = ['file', 's3', 'gcs', 'abs', 'sftp'] as const;
export type ReplicaType = (typeof REPLICA_TYPES)[number];
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface ReplicaConfig {
  type: ReplicaType;
  name?: string;
  url?: string;
  /** file: absolute directory; cloud: key prefix. */
  path?: string;
  syncIntervalMs?: number;
  snapshotIntervalMs?: number;
  retentionMs?: number;
  retentionCheckIntervalMs?: number;
  validationIntervalMs?: number;
  bucket?: string;
  region?: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  skipVerify?: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  accountName?: string;
  accountKey?: string;
  host?: string;
  user?: string;
  password?: string;
  keyPath?: string;
  age?: { identities: string[]; recipients: string[] };
}

export interface DbConfig {
  /** Absolute path of the database file. */
  path: string;
  metaPath?: string;
  monitorIntervalMs?: number;
  checkpointIntervalMs?: number;
  minCheckpointPageCount?: number;
  maxCheckpointPageCount?: number;
  replicas: ReplicaConfig[];
}

export interface Config {
  /** The file this came from. */
  path: string;
  dbs: DbConfig[];
  exec?: string;
  addr?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  logging: { level: LogLevel; type: 'text' | 'json'; stderr: boolean };
  /** Keys that were ignored (Litestream ignores unknown keys silently; we report them). */
  warnings: string[];
}

export interface ParseOptions {
  expandEnv: boolean;
  env: Record<string, string | undefined>;
  cwd: string;
  homeDir: string;
  /** For messages: where the text came from. */
  sourcePath: string;
}

export const DEFAULT_CONFIG_PATH = '/etc/litestream.yml';

const TOP_KEYS = ['dbs', 'exec', 'addr', 'access-key-id', 'secret-access-key', 'logging'];
const LOGGING_KEYS = ['level', 'type', 'stderr'];
const DB_KEYS = ['path', 'meta-path', 'monitor-interval', 'checkpoint-interval', 'min-checkpoint-page-count', 'max-checkpoint-page-count', 'replicas'];
const REPLICA_KEYS = [
  'type', 'name', 'url', 'path', 'sync-interval', 'snapshot-interval', 'retention', 'retention-check-interval',
  'validation-interval', 'bucket', 'region', 'endpoint', 'force-path-style', 'skip-verify', 'access-key-id',
  'secret-access-key', 'account-name', 'account-key', 'host', 'user', 'password', 'key-path', 'age',
];

type Obj = Record<string, unknown>;

class Reader {
  constructor(
    readonly where: string,
    private readonly obj: Obj,
  ) {}
  fail(key: string, detail: string): ReplicateError {
    return new ReplicateError('CONFIG', `${this.where}: ${key}: ${detail}`);
  }
  str(key: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    throw this.fail(key, `want a string, got ${describeType(v)}`);
  }
  bool(key: string): boolean | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    throw this.fail(key, `want true or false, got ${JSON.stringify(v)}`);
  }
  int(key: string): number | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null || v === '') return undefined;
    const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) throw this.fail(key, `want a whole number, got ${JSON.stringify(v)}`);
    return n;
  }
  duration(key: string): number | undefined {
    return durationFromYaml(this.obj[key], key, this.where);
  }
  strings(key: string): string[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) throw this.fail(key, `want a list, got ${describeType(v)}`);
    return v.map(String);
  }
}

function describeType(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  return typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`;
}

function asObject(v: unknown, where: string): Obj {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ReplicateError('CONFIG', `${where}: want a mapping, got ${describeType(v)}`);
  return v as Obj;
}

function unknownKeys(obj: Obj, known: readonly string[], where: string, warnings: string[]): void {
  for (const k of Object.keys(obj)) if (!known.includes(k)) warnings.push(`${where}: unknown key "${k}" ignored`);
}

export function parseConfig(text: string, opts: ParseOptions): Config {
  const src = `config ${opts.sourcePath}`;
  const expanded = opts.expandEnv ? expandEnv(text, opts.env) : text;
  let doc: unknown;
  try {
    doc = parseYaml(expanded);
  } catch (err) {
    throw new ReplicateError('CONFIG', `${src}: invalid YAML: ${describeError(err)}`, { cause: err });
  }
  const top = asObject(doc, src);
  const warnings: string[] = [];
  unknownKeys(top, TOP_KEYS, src, warnings);
  const r = new Reader(src, top);

  const logObj = asObject(top.logging, `${src}: logging`);
  unknownKeys(logObj, LOGGING_KEYS, `${src}: logging`, warnings);
  const lr = new Reader(`${src}: logging`, logObj);
  const levelText = (lr.str('level') ?? 'info').toLowerCase();
  const level: LogLevel = levelText === 'warning' ? 'warn' : (LOG_LEVELS as readonly string[]).includes(levelText) ? (levelText as LogLevel) : 'info';
  const logType = (lr.str('type') ?? 'text').toLowerCase();
  if (logType !== 'text' && logType !== 'json') throw lr.fail('type', `want "text" or "json", got "${logType}"`);

  const accessKeyId = r.str('access-key-id');
  const secretAccessKey = r.str('secret-access-key');
  const dbsRaw = top.dbs ?? [];
  if (!Array.isArray(dbsRaw)) throw r.fail('dbs', `want a list, got ${describeType(dbsRaw)}`);
  const dbs = dbsRaw.map((d, i) => parseDb(d, `${src}: dbs[${i}]`, opts, warnings, { accessKeyId, secretAccessKey }));

  return {
    path: opts.sourcePath,
    dbs,
    exec: r.str('exec'),
    addr: r.str('addr'),
    accessKeyId,
    secretAccessKey,
    logging: { level, type: logType, stderr: lr.bool('stderr') ?? false },
    warnings,
  };
}

function parseDb(raw: unknown, where: string, opts: ParseOptions, warnings: string[], creds: { accessKeyId?: string; secretAccessKey?: string }): DbConfig {
  const obj = asObject(raw, where);
  unknownKeys(obj, DB_KEYS, where, warnings);
  const r = new Reader(where, obj);
  const path = r.str('path');
  if (path === undefined) throw r.fail('path', 'database path required');
  const minCheckpointPageCount = r.int('min-checkpoint-page-count');
  if (minCheckpointPageCount !== undefined && minCheckpointPageCount <= 0) throw r.fail('min-checkpoint-page-count', 'must be greater than 0');
  const replicasRaw = obj.replicas ?? [];
  if (!Array.isArray(replicasRaw)) throw r.fail('replicas', `want a list, got ${describeType(replicasRaw)}`);
  const metaPath = r.str('meta-path');
  return {
    path: absolutePath(path, opts.cwd, opts.homeDir),
    metaPath: metaPath === undefined ? undefined : absolutePath(metaPath, opts.cwd, opts.homeDir),
    monitorIntervalMs: r.duration('monitor-interval'),
    checkpointIntervalMs: r.duration('checkpoint-interval'),
    minCheckpointPageCount,
    maxCheckpointPageCount: r.int('max-checkpoint-page-count'),
    replicas: replicasRaw.map((x, i) => parseReplica(x, `${where}.replicas[${i}]`, opts, warnings, creds)),
  };
}

function parseReplica(raw: unknown, where: string, opts: ParseOptions, warnings: string[], creds: { accessKeyId?: string; secretAccessKey?: string }): ReplicaConfig {
  const obj = asObject(raw, where);
  unknownKeys(obj, REPLICA_KEYS, where, warnings);
  const r = new Reader(where, obj);
  const url = r.str('url');
  const typeText = (url !== undefined ? url.split('://')[0] : r.str('type')) ?? 'file';
  if (url !== undefined && !isUrl(url)) throw r.fail('url', `not a URL: "${url}" (want e.g. s3://bucket/path or file:///path)`);
  const type = checkType(typeText.toLowerCase());
  let path = r.str('path');
  if (path !== undefined && isUrl(path)) throw r.fail('path', 'replica path cannot be a url, please use the "url" field instead');
  for (const [key, label] of [['path', 'path'], ['bucket', 'bucket'], ['host', 'host']] as const) {
    if (url !== undefined && r.str(key) !== undefined) throw new ReplicateError('CONFIG', `${where}: cannot specify url & ${label} for ${type} replica`);
  }
  const ageObj = obj.age === undefined ? undefined : asObject(obj.age, `${where}.age`);
  const cfg: ReplicaConfig = {
    type,
    name: r.str('name'),
    url,
    syncIntervalMs: r.duration('sync-interval'),
    snapshotIntervalMs: r.duration('snapshot-interval'),
    retentionMs: r.duration('retention'),
    retentionCheckIntervalMs: r.duration('retention-check-interval'),
    validationIntervalMs: r.duration('validation-interval'),
    bucket: r.str('bucket'),
    region: r.str('region'),
    endpoint: r.str('endpoint'),
    forcePathStyle: r.bool('force-path-style'),
    skipVerify: r.bool('skip-verify'),
    accessKeyId: r.str('access-key-id') ?? creds.accessKeyId,
    secretAccessKey: r.str('secret-access-key') ?? creds.secretAccessKey,
    accountName: r.str('account-name'),
    accountKey: r.str('account-key'),
    host: r.str('host'),
    user: r.str('user'),
    password: r.str('password'),
    keyPath: r.str('key-path'),
    age: ageObj ? { identities: new Reader(`${where}.age`, ageObj).strings('identities'), recipients: new Reader(`${where}.age`, ageObj).strings('recipients') } : undefined,
  };
  if (url !== undefined) {
    const u = parseReplicaUrl(url, opts.cwd, opts.homeDir);
    if (type === 'file') path = u.path;
    else {
      path = u.path;
      cfg.bucket = u.host;
      if (type === 'abs' && cfg.accountName === undefined && u.user !== undefined) cfg.accountName = u.user;
    }
  } else if (type === 'file' && path !== undefined) {
    path = absolutePath(path, opts.cwd, opts.homeDir);
  }
  if (type === 'file' && path === undefined) throw r.fail('path', 'file replica path required');
  cfg.path = path;
  return stripUndefined(cfg);
}

function checkType(type: string): ReplicaType {
  if (!(REPLICA_TYPES as readonly string[]).includes(type)) {
    throw new ReplicateError('UNKNOWN_REPLICA_TYPE', `unknown replica type in config: "${type}"`, { details: { type } });
  }
  return type as ReplicaType;
}

function stripUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

export interface LoadOptions {
  path?: string;
  expandEnv: boolean;
  env: Record<string, string | undefined>;
  cwd: string;
  homeDir: string;
}

/** The config path: explicit, else $LITESTREAM_CONFIG, else /etc/litestream.yml. */
export function configPath(opts: Pick<LoadOptions, 'path' | 'env' | 'cwd' | 'homeDir'>): string {
  const p = opts.path ?? (opts.env.LITESTREAM_CONFIG || undefined) ?? DEFAULT_CONFIG_PATH;
  return absolutePath(p, opts.cwd, opts.homeDir);
}

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
  return parseConfig(text, { ...opts, sourcePath: path });
}

/** The config entry for a database path given on the command line (made absolute, matched exactly). */
export function findDb(config: Config, dbPath: string, cwd: string, homeDir: string): DbConfig {
  const abs = absolutePath(dbPath, cwd, homeDir);
  const db = config.dbs.find((d) => d.path === abs);
  if (!db) throw new ReplicateError('NOT_FOUND', `database not found in config: ${abs} (config ${config.path})`, { details: { path: abs } });
  return db;
}

export function replicaName(r: ReplicaConfig): string {
  return r.name ?? r.type;
}
