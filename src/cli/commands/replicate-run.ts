/**
 * What `replicate` does (its flags are in replicate.ts): follow one or more databases and ship their
 * changes to their replicas until SIGINT or SIGTERM (or, with -exec, until the app exits). The CLI owns
 * the process: signals, exit codes, logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { describeError, ReplicateError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { Replication, ReplicationOptions } from '../../replication.js';
import type { MetricsServer } from '../../metrics/metrics-server.js';
import type { CliIo } from '../io.js';
import { createCliLogger } from '../log.js';
import { leaseFor, type LeaseConfig } from '../lease-setup.js';
import type { ReplicaLease } from '../../lease/replica-lease.js';
import { splitShellWords } from '../shell-words.js';
import { SignalLatch } from '../signal-latch.js';
import type { ReplicateFlags } from './replicate.js';

type ReplicationSpecOptions = Omit<ReplicationOptions, 'logger'>;

export async function replicate(db: string | undefined, urls: string[], flags: ReplicateFlags, io: CliIo): Promise<number> {
  const { startReplication } = await import('../../replication.js');
  const config = await import('../../config/index.js');

  let log: Logger;
  let specs: { dbPath: string; options: ReplicationSpecOptions; leases: LeaseConfig[] }[];
  let exec = flags.exec;
  let metrics: { addr: string; healthMaxLagMs: number | undefined } | undefined;
  if (db !== undefined) {
    if (flags.config !== undefined) throw new ReplicateError('INVALID_ARGUMENT', 'cannot specify a replica URL and the -config flag');
    if (urls.length === 0) throw new ReplicateError('INVALID_ARGUMENT', `must specify at least one replica URL for ${db}`);
    const dbPath = config.absolutePath(db, io.cwd, io.homeDir);
    log = createCliLogger({ level: 'info', type: 'text', stream: io.stderr });
    const replicas = urls.map((u) => config.replicaSpecFromConfig(config.replicaFromUrl(u, io.cwd, io.homeDir), io.env, io.homeDir));
    specs = [{ dbPath, options: { dbPath, replicas }, leases: replicas.map(() => ({})) }];
  } else {
    // Its warnings go through the logger below, as Litestream-style log lines.
    const cfg = await (await import('../target.js')).loadCliConfig(flags, io, { reportWarnings: false });
    log = createCliLogger({ level: cfg.logging.level, type: cfg.logging.type, stream: cfg.logging.stderr ? io.stderr : io.stdout });
    for (const w of cfg.warnings) log.warn(w);
    if (cfg.addr !== undefined && cfg.addr !== '') metrics = { addr: cfg.addr, healthMaxLagMs: cfg.healthMaxLagMs };
    exec ??= cfg.exec;
    if (cfg.dbs.length === 0) log.warn('no databases specified in configuration');
    specs = cfg.dbs.map((d) => ({
      dbPath: d.path,
      options: config.replicationOptionsFromConfig(d, io.env, io.homeDir),
      leases: d.replicas.map((r) => ({ lease: r.lease, leaseTtlMs: r.leaseTtlMs })),
    }));
  }

  // A command line that cannot be split is a usage error, found before anything is replicated.
  let execWords: string[] | undefined;
  if (exec !== undefined && exec.trim() !== '') {
    try {
      execWords = splitShellWords(exec);
    } catch (err) {
      throw new ReplicateError('INVALID_ARGUMENT', `-exec: ${describeError(err)}`, { cause: err });
    }
  }

  // One lease per replica (see docs/lease.md): held before anything is written there — before the
  // start-up restore and before the application starts — and released after the final sync.
  const leases: ReplicaLease[] = [];
  for (const s of specs) {
    s.options.replicas.forEach((r, i) => {
      const lease = leaseFor(r.name ?? r.client.type, r.client, s.leases[i] ?? {}, log);
      if (lease) {
        r.lease = lease;
        leases.push(lease);
      }
    });
  }

  const started: Replication[] = [];
  // Before replicating: a bad address or a port in use ends the command here, with nothing started.
  let server: MetricsServer | undefined;
  if (metrics) {
    const { startMetricsServer, parseBindAddress } = await import('../../metrics/metrics-server.js');
    const bind = parseBindAddress(metrics.addr);
    const { Registry, collectDefaultMetrics } = await import('prom-client');
    const registry = new Registry();
    // Node's process_* and nodejs_* metrics, where Litestream has Go's process_* and go_*.
    collectDefaultMetrics({ register: registry });
    // Not healthy until every database replicates (a start-up restore can take minutes).
    server = await startMetricsServer({
      addr: bind,
      replications: () => started,
      healthMaxLagMs: metrics.healthMaxLagMs,
      registry,
      logger: log,
      starting: () => starting,
    });
  }

  const stop = new AbortController();
  let child: ChildProcess | undefined;
  let childExit: Promise<number> | undefined;
  let signalled: NodeJS.Signals | undefined;
  // A stop requested while the databases open takes effect once they are open: aborting their start
  // would leave nothing to make the final sync with.
  let starting = true;
  // A start-up restore is stopped by a signal (nothing is written then): there is nothing to sync yet.
  let restoringAtStartup = false;
  // Waiting for a lease held elsewhere is stopped by a signal too: nothing is written before it is held.
  let acquiringLeases = leases.length > 0;
  const leaseWait = new AbortController();
  // A lease lost while replicating (not renewed in time, taken over): this instance stops, non-zero.
  let leaseLost = false;
  for (const lease of leases) {
    lease.on('lost', (err) => {
      leaseLost = true;
      log.error('stopping: this instance may no longer write to the replica', { replica: lease.replica, error: describeError(err) });
      if (child && child.exitCode === null) child.kill('SIGTERM');
      stop.abort();
    });
  }
  const onSignal = (sig: NodeJS.Signals) => {
    signalled = sig;
    log.info('signal received, shutting down', { signal: sig });
    if (child && child.exitCode === null)
      child.kill(sig); // the app stops first; we follow when it exits
    else if (acquiringLeases)
      leaseWait.abort(); // only a wait for another holder ends here (see below)
    else if (!starting || restoringAtStartup) stop.abort();
  };
  // A signal caught while this command was loading and reading its config arrives here now: replication
  // still starts and then stops with a final sync, as Litestream does.
  const signals = io.signals ?? SignalLatch.install();
  signals.take(onSignal);
  let acquiring: ReplicaLease | undefined;
  try {
    try {
      // A signal held from start-up does not stop a lease that is free: it is taken at the first try, and
      // replication starts and makes its final sync as without leases. It stops a wait for another holder.
      for (const lease of leases) {
        if (signalled) leaseWait.abort();
        acquiring = lease;
        await lease.acquire(leaseWait.signal);
      }
    } catch (err) {
      // Stopped while waiting for another holder (a standby at the end of a rolling deployment) is a
      // clean stop; anything else is not: the store unreachable at the first look, one that does not
      // enforce conditional writes (LEASE_UNSUPPORTED, which names `lease: false`), or a stop while the
      // store never answered. Nothing was written, nothing started.
      const waiting = signalled !== undefined && leaseWait.signal.aborted && acquiring?.looked === true;
      if (!waiting) {
        const code = err instanceof ReplicateError ? err.code : 'IO';
        const details = err instanceof ReplicateError ? err.details : {};
        throw new ReplicateError(
          code,
          `${describeError(err)}; nothing was written, not replicating${execWords !== undefined ? ' and not starting the application' : ''}`,
          { cause: err, details },
        );
      }
      // A standby instance stopped while it waited (a rolling deployment ending): nothing was written.
      await Promise.all(leases.map((l) => l.release()));
      await server?.close();
      log.info('stopped while waiting for a replica lease; nothing was written', { signal: signalled });
      return 0;
    } finally {
      acquiringLeases = false;
    }
    // The start-up restore: before anything else touches the databases, and before the application
    // runs; after the leases, so that it starts from the last state of the instance that held them.
    if (flags.restoreIfDbNotExists === true) {
      restoringAtStartup = true;
      const restoring = new AbortController();
      const abortRestore = () => restoring.abort();
      stop.signal.addEventListener('abort', abortRestore, { once: true });
      try {
        for (const s of specs) {
          if (signalled) abortRestore();
          await restoreAtStartup(s.dbPath, s.options, restoring.signal, log);
        }
      } finally {
        stop.signal.removeEventListener('abort', abortRestore);
        restoringAtStartup = false;
      }
    }
    for (const s of specs) {
      // Not waiting for a database that does not exist yet: with -exec, the application creates it.
      // In-process: this command has no application on its event loop to protect from the shipper's
      // synchronous SQLite work, which is what the worker thread of embedded replication is for.
      const r = await startReplication({ ...s.options, logger: log, signal: stop.signal, waitForDatabase: false, inline: true });
      started.push(r);
      log.info('replicating', { db: s.dbPath, replicas: r.replicas.map((x) => `${x.name}:${x.client.location}`).join(',') });
    }
    starting = false;
    if (signalled) stop.abort();
    // The first sync before the app starts; a replica that is down must not keep the app from starting.
    // (Not when a stop came during start-up: the final sync below is the one that counts.)
    if (!stop.signal.aborted)
      for (const r of started)
        await r.sync().catch((err: unknown) => log.error('initial sync incomplete', { db: r.dbPath, error: describeError(err) }));

    if (execWords !== undefined && !stop.signal.aborted) {
      const [cmd, ...args] = execWords;
      log.info('starting subprocess', { command: exec });
      child = spawn(cmd!, args, { stdio: 'inherit', env: io.env });
      childExit = new Promise((resolve) => {
        child!.once('error', (err) => {
          log.error('subprocess failed to start', { command: exec, error: describeError(err) });
          resolve(1);
        });
        child!.once('exit', (code, sig) => resolve(code ?? (sig ? 128 + (signalNumber(sig) ?? 1) : 1)));
      });
      childExit.then(
        () => stop.abort(),
        () => stop.abort(),
      );
    }
    if (!stop.signal.aborted) {
      // The library's watchers and timers do not keep the process alive on purpose; the command does.
      const keepAlive = setInterval(() => undefined, 1 << 30);
      await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
      clearInterval(keepAlive);
    }
  } catch (err) {
    // A failed start (the start-up restore, a database that cannot be opened): the metrics server must
    // not keep the process alive, nor what did start keep running.
    for (const r of started) await r.close().catch(() => undefined);
    await Promise.all(leases.map((l) => l.release()));
    await server?.close();
    throw err;
  } finally {
    // From here a second signal ends the process at once, by default (e.g. a final sync that retries an
    // unreachable store, stopped by a second Ctrl-C).
    signals.release();
  }

  // Final sync of every replica of every database, then close.
  let failed = false;
  for (const r of started) {
    try {
      await r.close();
    } catch (err) {
      failed = true;
      log.error('final sync failed; these changes are only in the local database', { db: r.dbPath, error: describeError(err) });
    }
  }
  // Those of databases that never started (close() released the others after their final sync).
  await Promise.all(leases.map((l) => l.release()));
  await server?.close();
  const appCode = childExit ? await childExit : undefined;
  log.info('stn-replicate shut down', signalled ? { signal: signalled } : {});
  if (leaseLost) return appCode !== undefined && appCode !== 0 ? appCode : 1;
  if (appCode !== undefined && appCode !== 0) return appCode;
  return failed ? 1 : 0;
}

/**
 * `-restore-if-db-not-exists` for one database: restore its latest state when the file is missing. No
 * backup at all is a first boot; every other failure propagates (the command exits non-zero before
 * replicating or starting the application, with no database file created). A restore through a config
 * with `continue-after-restore` leaves the marker that lets replication continue the restored generation.
 */
async function restoreAtStartup(dbPath: string, opts: ReplicationSpecOptions, signal: AbortSignal, log: Logger): Promise<void> {
  const { restoreIfMissing } = await import('../../replica/restore-if-missing.js');
  let lastLog = Date.now();
  const outcome = await restoreIfMissing(dbPath, opts.replicas, {
    metaPath: opts.metaPath,
    restoreMarker: opts.continueAfterRestore === true,
    signal,
    logger: log,
    // A big restore says how far it is, every few seconds (a container's start-up can take minutes).
    onProgress: (p) => {
      const now = Date.now();
      if (now - lastLog < PROGRESS_LOG_MS) return;
      lastLog = now;
      log.info('restoring', {
        db: dbPath,
        phase: p.phase,
        downloaded: `${p.bytesDone}/${p.bytesTotal} bytes`,
        indexes: `${p.indexesApplied}/${p.indexesTotal}`,
      });
    },
  }).catch((err: unknown) => {
    if (signal.aborted)
      throw new ReplicateError(
        'ABORTED',
        '-restore-if-db-not-exists: interrupted by a signal; nothing was written, not starting the application',
        { cause: err },
      );
    const code = err instanceof ReplicateError ? err.code : 'IO';
    const details = err instanceof ReplicateError ? { ...err.details, startupRestore: true } : { startupRestore: true };
    throw new ReplicateError(code, `-restore-if-db-not-exists: ${describeError(err)}; not replicating and not starting the application`, {
      cause: err,
      details,
    });
  });
  if (outcome.kind === 'no-backup') log.info('no backup exists yet: first start, the application creates the database', { db: dbPath });
}

const PROGRESS_LOG_MS = 5000;

function signalNumber(sig: NodeJS.Signals): number | undefined {
  return ({ SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[sig];
}
