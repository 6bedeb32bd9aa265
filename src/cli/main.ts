/**
 * The stn-replicate command line: Litestream v0.3.13's commands and flags. Flags work with one dash
 * (`-timestamp`, as Litestream's Go flag package takes them) and with two.
 */
import { homedir } from 'node:os';
import { createRequire } from 'node:module';
import { ReplicateError, describeError, isReplicateError } from '../errors.js';
import { VERSION, LITESTREAM_COMPAT_VERSION } from '../version.js';
import type { CliIo, RunContext } from './io.js';
import { registerRestore } from './commands/restore.js';
import { registerListings } from './commands/listings.js';
import { registerReplicate } from './commands/replicate.js';
import { registerLease } from './commands/lease.js';

// commander is CommonJS: `require` loads it without the ES module loader's scan of its source for named
// exports, which took ~6 ms of every start (20 starts of `version`, measured).
const { Command, CommanderError } = createRequire(import.meta.url)('commander') as typeof import('commander');

/** Long flag names that may be written with a single dash. */
const LONG_FLAGS = new Set([
  'config',
  'no-expand-env',
  'replica',
  'generation',
  'index',
  'timestamp',
  'parallelism',
  'if-db-not-exists',
  'if-replica-exists',
  'integrity-check',
  'stop-at-gap',
  'dry-run',
  'replace-existing',
  'exec',
  'restore-if-db-not-exists',
  'break',
  'help',
]);

/** Rewrites `-name` / `-name=value` to `--name…` for known long flags, and `-o=PATH` to `-o PATH`; stops at `--`. */
export function normalizeArgs(argv: readonly string[]): string[] {
  const out: string[] = [];
  let passthrough = false;
  for (const arg of argv) {
    if (passthrough || arg === '--') {
      passthrough = true;
      out.push(arg);
      continue;
    }
    // -o=PATH (Go's flag package takes it); commander would read the value as "=PATH".
    const o = /^-o=(.*)$/s.exec(arg);
    if (o) {
      out.push('-o', o[1]!);
      continue;
    }
    const m = /^-([a-z][a-z0-9-]+)(=.*)?$/.exec(arg);
    out.push(m && LONG_FLAGS.has(m[1]!) ? `-${arg}` : arg);
  }
  return out;
}

/**
 * Third-party notices the CLI keeps off its output, each by the switch its package documents for it:
 * the AWS SDK's Node-version support notice (a process warning printed on stderr at the first S3 client,
 * about SDK releases this build does not use). The SDK reads the switch from process.env, so it is set
 * there; commands get the environment as it was, so `-exec` children and `$VAR` expansion see no change.
 */
const QUIET_ENV = { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' } as const;

function defaultIo(): CliIo {
  const env = { ...process.env };
  for (const [k, v] of Object.entries(QUIET_ENV)) process.env[k] ??= v;
  return { stdout: process.stdout, stderr: process.stderr, env, cwd: process.cwd(), homeDir: homedir() };
}

/** Runs one command line; returns the exit code. Never calls process.exit. */
export async function main(argv: readonly string[], ioOverride?: Partial<CliIo>): Promise<number> {
  const io: CliIo = { ...defaultIo(), ...ioOverride };
  const ctx: RunContext = { exitCode: 0 };
  const program = new Command('stn-replicate')
    .description(`streaming replication for SQLite, compatible with Litestream ${LITESTREAM_COMPAT_VERSION} replicas`)
    .exitOverride()
    .showHelpAfterError('(run with -h for usage)')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    });

  program
    .command('version')
    .description('print the version')
    .action(() => {
      io.stdout.write(`${VERSION}\n`);
    });
  registerReplicate(program, io, ctx);
  registerRestore(program, io);
  registerListings(program, io, ctx);
  registerLease(program, io, ctx);

  // Only replicate acts on a signal itself (a final sync); every other command ends by it, as by default.
  program.hook('preAction', (_program, action) => {
    if (action.name() !== 'replicate') io.signals?.release();
  });
  for (const cmd of program.commands)
    cmd.exitOverride().configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  try {
    await program.parseAsync(normalizeArgs(argv), { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version requested explicitly are not errors; everything else is (exit 1, as Litestream).
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      if (err.code === 'commander.help') return argv.length === 0 ? 1 : 0;
      return 1;
    }
    io.stderr.write(`error: ${describeError(err)}\n`);
    const hint = hintFor(err);
    if (hint) io.stderr.write(`hint: ${hint}\n`);
    if (!isReplicateError(err)) io.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    return 1;
  } finally {
    io.signals?.release();
  }
}

function hintFor(err: unknown): string | undefined {
  if (!(err instanceof ReplicateError)) return undefined;
  switch (err.code) {
    case 'NO_BACKUPS':
      return err.details.empty
        ? 'check the replica path or URL; with -if-replica-exists, restore exits 0 when there is no backup'
        : 'list what the replica holds with `stn-replicate generations` and `stn-replicate snapshots`';
    case 'OUTPUT_EXISTS':
      if (err.details.startupRestore === true) {
        return 'a -wal file without its database is left from an earlier database: move it aside (or remove it, if that database is gone for good) and start again';
      }
      return (
        'to restore over it: stop the application and any replicator using it, then move the file and its -wal and -shm aside ' +
        '(or pass -replace-existing, which does that after a successful restore); or choose another -o path, ' +
        'or pass -if-db-not-exists to skip restoring'
      );
    case 'DATABASE_IN_USE':
      return 'stop the application and any replicator (stn-replicate or litestream replicate) that has the database open, then run the restore again';
    case 'MISSING_WAL_INDEX':
    case 'MISSING_INITIAL_SEGMENT':
    case 'WAL_SEGMENT_GAP':
      return 'the replica is missing WAL data; -stop-at-gap restores up to the last consistent point before it';
    case 'TIMESTAMP_OUT_OF_RANGE':
      return 'pick a -timestamp inside one of the ranges above, or list them with `stn-replicate restore -dry-run`';
    case 'AGE_IDENTITY':
      return err.details.reason === 'missing'
        ? 'list the secret key (AGE-SECRET-KEY-1…) under age: identities: of this replica in the config and restore with -config; a replica URL alone cannot decrypt'
        : 'the object was encrypted to other recipients: list the matching secret key under age: identities: (several may be listed, one per entry or line)';
    case 'HOST_KEY_NOT_TRUSTED':
      return 'an sftp replica trusts the host key in its host-key, else those in known-hosts-path (default ~/.ssh/known_hosts); insecure-ignore-host-key: true turns the check off, for test setups only';
    case 'AUTH_FAILED':
      return "check the replica's user, password and key-path (the key's public half must be in the server's authorized_keys)";
    case 'UNREACHABLE':
      return 'check the host and port, and that the server is running and reachable from this machine';
    case 'CORRUPT_OBJECT':
      return 'the named object is damaged; restore an earlier point with -timestamp or -index, or another replica with -replica';
    default:
      return undefined;
  }
}
