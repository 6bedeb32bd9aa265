import { lstat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ReplicateError, isReplicateError } from '../../errors.js';
import { DEFAULT_RESTORE_PARALLELISM } from '../../config/defaults.js';
import { expandHome } from '../../config/replica-url.js';
import type { IntegrityCheck, RestorePreview, RestoreResult } from '../../replica/restore.js';
import type { RestoreTarget } from '../../replica/restore-plan.js';
import { MAX_INDEX, formatHex8 } from '../../layout.js';
import { formatTable } from '../format.js';
import type { CliIo } from '../io.js';

// Kept here (not imported from restore.ts) so that `--help` does not load SQLite and LZ4.
const INTEGRITY_CHECKS = ['none', 'quick', 'full'] as const;

/** The flags parsed and checked before anything is loaded. */
interface ParsedRestoreFlags {
  index: number | undefined;
  timestamp: Date | undefined;
  parallelism: number;
  integrityCheck: IntegrityCheck;
  replaceExisting: boolean;
}

interface RestoreFlags {
  o?: string;
  config?: string;
  expandEnv?: boolean;
  replica?: string;
  generation?: string;
  index?: string;
  timestamp?: string;
  parallelism?: string;
  ifDbNotExists?: boolean;
  ifReplicaExists?: boolean;
  integrityCheck?: string;
  stopAtGap?: boolean;
  dryRun?: boolean;
  replaceExisting?: boolean;
}

export function registerRestore(program: Command, io: CliIo): void {
  program
    .command('restore')
    .description('restore a database from its replica (latest state, or a point in time)')
    .argument('[target]', 'DB_PATH (looked up in the config) or REPLICA_URL')
    .option('-o <path>', 'output path (default: the database path from the config; required with a URL)')
    .option('--config <path>', 'config file (default: $LITESTREAM_CONFIG or /etc/litestream.yml)')
    .option('--no-expand-env', 'do not expand environment variables in the config')
    .option('--replica <name>', 'restore from this replica only')
    .option('--generation <name>', 'restore from this generation only')
    .option('--index <hex>', 'restore up to and including this WAL index (hexadecimal)')
    .option('--timestamp <time>', 'restore the state at this time (RFC 3339, e.g. 2024-11-11T10:00:00Z)')
    .option('--parallelism <n>', 'WAL segments downloaded at once', String(DEFAULT_RESTORE_PARALLELISM))
    .option('--if-db-not-exists', 'exit 0 without restoring when the output already exists')
    .option('--if-replica-exists', 'exit 0 without restoring when the replica holds no backup')
    .option('--integrity-check <mode>', `check the restored database: ${INTEGRITY_CHECKS.join('|')}`, 'quick')
    .option('--stop-at-gap', 'on a missing WAL index or segment, restore up to the last consistent point instead of failing')
    .option('--dry-run', 'print what would be restored (replica, generation, snapshot, WAL segments, bytes) without downloading or writing')
    .option(
      '--replace-existing',
      'when the output exists: after a successful restore, move it and its -wal/-shm aside (<db>.replaced-<time>) and put the restored database in its place; refused while the database is in use',
    )
    .action(async (target: string | undefined, flags: RestoreFlags) => {
      const index = flags.index === undefined ? undefined : parseHexIndex(flags.index);
      const timestamp = flags.timestamp === undefined ? undefined : parseTimestamp(flags.timestamp);
      if (index !== undefined && timestamp !== undefined) {
        throw new ReplicateError('INVALID_ARGUMENT', 'cannot specify index & timestamp to restore');
      }
      const parallelism = parsePositiveInt(flags.parallelism ?? String(DEFAULT_RESTORE_PARALLELISM), '-parallelism');
      const integrityCheck = parseIntegrityCheck(flags.integrityCheck ?? 'quick');
      const replaceExisting = flags.replaceExisting === true;
      if (replaceExisting && flags.ifDbNotExists) {
        throw new ReplicateError('INVALID_ARGUMENT', 'cannot specify -replace-existing and -if-db-not-exists together');
      }

      // The snapshot's decode worker starts while this thread loads the restore's modules and reads the
      // config (a worker takes ~40 ms to start on a quiet 2-core machine): not for a dry run, nor for
      // -if-db-not-exists, which often restores nothing (restore() starts one after its check).
      const releaseWorker =
        flags.dryRun || flags.ifDbNotExists
          ? undefined
          : import('../../internal/lz4-frame-to-file.js').then((m) => m.prestartDecodeWorker());
      releaseWorker?.catch(() => undefined); // a failure here is restore()'s to report, when it starts its own
      try {
        await restoreWith(target, flags, { index, timestamp, parallelism, integrityCheck, replaceExisting });
      } finally {
        await releaseWorker?.then((release) => release()).catch(() => undefined);
      }
    });

  async function restoreWith(
    target: string | undefined,
    flags: RestoreFlags,
    { index, timestamp, parallelism, integrityCheck, replaceExisting }: ParsedRestoreFlags,
  ): Promise<void> {
    const [{ resolveTarget }, { restore, previewRestore }, { createProgress }] = await Promise.all([
      import('../target.js'),
      import('../../replica/restore.js'),
      import('../progress.js'),
    ]);
    const t = await resolveTarget(target, flags, io);
    let output = flags.o !== undefined ? resolve(io.cwd, expandHome(flags.o, io.homeDir)) : t.db?.path;
    if (output !== undefined) output = resolve(output);
    // What to restore: the same for a dry run and a restore, so the dry run plans exactly what would run.
    const what = { generation: flags.generation, index, timestamp, stopAtGap: flags.stopAtGap === true, signal: io.signal };

    if (flags.dryRun) {
      // A dry run plans (and fails) exactly like a restore, but needs no output path.
      try {
        const preview = await previewRestore(t.replicas, { ...what, outputPath: output, replaceExisting });
        const skip = flags.ifDbNotExists === true && output !== undefined && (await exists(output));
        io.stdout.write(formatRestorePreview(preview, { ifDbNotExists: skip }));
        io.stderr.write('dry run: nothing was downloaded or written\n');
      } catch (err) {
        if (flags.ifReplicaExists && isReplicateError(err, 'NO_BACKUPS')) {
          io.stderr.write(`no matching backups found, a restore would skip: ${err.message}\n`);
          return;
        }
        throw err;
      }
      return;
    }

    if (output === undefined) throw new ReplicateError('INVALID_ARGUMENT', 'output path required (use -o PATH with a replica URL)');

    if (flags.ifDbNotExists && (await exists(output))) {
      io.stderr.write(`database already exists, skipping: ${output}\n`);
      return;
    }

    const progress = createProgress(io, 'restoring');
    try {
      // The restore marker (a SHA-256 of the whole file) only when replication will use it.
      const restoreMarker = t.db?.continueAfterRestore === true;
      const result = await restore(t.replicas, {
        ...what,
        outputPath: output,
        parallelism,
        integrityCheck,
        restoreMarker,
        replaceExisting,
        onProgress: progress?.update,
      });
      progress?.stop();
      io.stderr.write(formatRestoreResult(result));
      if (result.stoppedAt) io.stderr.write(`warning: restore stopped early at a gap: ${result.stoppedAt}\n`);
    } catch (err) {
      progress?.stop();
      if (flags.ifReplicaExists && isReplicateError(err, 'NO_BACKUPS')) {
        io.stderr.write(`no matching backups found, skipping: ${err.message}\n`);
        return;
      }
      throw err;
    }
  }
}

/**
 * The success report on stderr: the point in time restored (exact enough to pass back as -timestamp) and
 * the replica position, then where the replaced database went.
 */
export function formatRestoreResult(result: RestoreResult): string {
  const p = result.plan;
  const pos = result.position;
  let text =
    `restored ${result.outputPath} to ${result.stateAt.toISOString()} (replica ${p.replica}, generation ${pos.generation}, ` +
    `index ${pos.index}, offset ${pos.offset}; from snapshot index ${p.snapshot.index}, ${plural(result.indexesApplied, 'WAL index', 'WAL indexes')})\n`;
  if (result.movedAside) text += `the database that was there was moved aside: ${result.movedAside.join(', ')}\n`;
  return text;
}

/** Decimal (as the listings print indexes) with the hexadecimal form `-index` takes. */
function formatIndex(index: number): string {
  return `${index} (hex ${formatHex8(index)})`;
}

function formatTarget(target: RestoreTarget): string {
  switch (target.kind) {
    case 'latest':
      return 'latest';
    case 'timestamp':
      return `-timestamp ${target.timestamp.toISOString()}`;
    case 'index':
      return `-index ${formatHex8(target.index)} (index ${target.index})`;
  }
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * The dry-run report: the plan as `key  value` lines, then the restorable time range of every generation
 * of the chosen replica as a table. Times are RFC 3339 UTC with milliseconds (exact enough to pass back
 * as -timestamp).
 */
export function formatRestorePreview(p: RestorePreview, opts: { ifDbNotExists?: boolean } = {}): string {
  const wal =
    p.wal.segments === 0 || p.wal.firstIndex === undefined || p.wal.lastIndex === undefined
      ? 'none (the snapshot alone)'
      : `${plural(p.wal.segments, 'segment', 'segments')} in ${plural(p.wal.indexes, 'index', 'indexes')}, ` +
        `${formatIndex(p.wal.firstIndex)} .. ${formatIndex(p.wal.lastIndex)}, ${plural(p.wal.bytes, 'byte', 'bytes')}`;
  const lines: [string, string][] = [
    ['replica', `${p.replica} (${p.replicaType}, ${p.replicaLocation})`],
    ['generation', p.generation],
    ['target', formatTarget(p.target)],
    [
      'snapshot',
      `index ${formatIndex(p.snapshot.index)}, ${plural(p.snapshot.size, 'byte', 'bytes')}, created ${p.snapshot.createdAt.toISOString()}`,
    ],
    ['wal', wal],
    ['download', `${plural(p.bytesTotal, 'byte', 'bytes')} (stored size of the snapshot and WAL segments)`],
    ['state at', p.stateAt.toISOString()],
  ];
  if (p.truncatedReason !== undefined) lines.push(['stops early', p.truncatedReason]);
  if (p.output !== undefined) {
    let note = '';
    if (opts.ifDbNotExists) note = ' (exists: -if-db-not-exists would skip the restore)';
    else if (p.output.replaces) note = ' (exists: -replace-existing would move it and its -wal/-shm aside)';
    else if (p.output.error) note = ` (a restore would fail: ${p.output.error.message})`;
    lines.push(['output', `${p.output.path}${note}`]);
  }
  const width = Math.max(...lines.map(([k]) => k.length)) + 2;
  const head = lines.map(([k, v]) => `${k.padEnd(width)}${v}\n`).join('');
  const rows = p.generations.map((g) => [
    g.generation,
    g.first?.toISOString() ?? '-',
    g.last?.toISOString() ?? '-',
    String(g.snapshots),
    String(g.segments),
  ]);
  return `${head}\n${formatTable(['generation', 'first restorable', 'last restorable', 'snapshots', 'segments'], rows)}`;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/** `-index` is hexadecimal, as in Litestream (the listings print decimal). */
export function parseHexIndex(value: string): number {
  if (!/^(0x)?[0-9a-fA-F]{1,8}$/.test(value)) {
    throw new ReplicateError('INVALID_ARGUMENT', `invalid -index "${value}": want a hexadecimal WAL index such as 0000001f`);
  }
  const n = parseInt(value.replace(/^0x/, ''), 16);
  if (n > MAX_INDEX) throw new ReplicateError('INVALID_ARGUMENT', `invalid -index "${value}": above the maximum ${formatHex8(MAX_INDEX)}`);
  return n;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export function parseTimestamp(value: string): Date {
  const t = RFC3339.test(value) ? Date.parse(value.toUpperCase()) : NaN;
  if (Number.isNaN(t)) {
    throw new ReplicateError('INVALID_ARGUMENT', `invalid -timestamp "${value}": must be RFC 3339 / ISO 8601 (e.g. 2000-01-01T00:00:00Z)`);
  }
  return new Date(t);
}

function parsePositiveInt(value: string, flag: string): number {
  if (!/^-?\d+$/.test(value)) throw new ReplicateError('INVALID_ARGUMENT', `invalid ${flag} "${value}": want a whole number`);
  return Math.max(1, parseInt(value, 10));
}

function parseIntegrityCheck(value: string): IntegrityCheck {
  if (!(INTEGRITY_CHECKS as readonly string[]).includes(value)) {
    throw new ReplicateError('INVALID_ARGUMENT', `invalid -integrity-check "${value}": want one of ${INTEGRITY_CHECKS.join(', ')}`);
  }
  return value as IntegrityCheck;
}
