/**
 * The HTTP endpoint of `addr` (node:http): `GET /metrics` in Prometheus text format and `GET /healthz`
 * for a probe (200 while every replica is within the lag threshold, 503 with which one is behind and by
 * how much otherwise; JSON either way). Litestream's Go endpoint also serves /debug/pprof; this one does
 * not.
 *
 * The CLI starts it before replicating (a port in use is an error before anything starts) with its own
 * registry; an embedding application can start one the same way, or register the metrics into its own
 * prom-client registry (registerReplicationMetrics) and serve them itself.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { describeError, errnoCode, ReplicateError } from '../errors.js';
import { nullLogger, type Logger } from '../logger.js';
import type { Replication } from '../replication.js';
import { DEFAULT_HEALTH_MAX_LAG_MS } from '../config/defaults.js';
import { evaluateHealth, startingReport } from './health.js';
import { promClient, registerReplicationMetrics, StatusReader, type ReplicationSource } from './prometheus-metrics.js';

export interface BindAddress {
  /** undefined: every interface (an address written without a host, such as ":9090"). */
  host: string | undefined;
  port: number;
}

/**
 * Parses `addr` as Litestream takes it: `host:port`, `:port` (every interface), `[v6]:port`. A port is
 * required ("must specify port for bind address", as Litestream says).
 */
export function parseBindAddress(addr: string): BindAddress {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d*)$/.exec(addr.trim());
  if (!m || m[3] === '')
    throw new ReplicateError('CONFIG', `must specify port for bind address: ${JSON.stringify(addr)}`, { details: { addr } });
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port > 65535)
    throw new ReplicateError('CONFIG', `invalid port in bind address: ${JSON.stringify(addr)}`, { details: { addr } });
  const host = m[1] ?? m[2];
  return { host: host === '' ? undefined : host, port };
}

export interface MetricsServerOptions {
  /** Where to listen: `host:port` or `:port` (see parseBindAddress), or parsed. */
  addr: string | BindAddress;
  /**
   * The replications to report on: a list, or a function asked at every request. Given a list, the server
   * closes by itself once every replication in it has closed.
   */
  replications: ReplicationSource;
  /** /healthz answers 503 once a replica's lag is over this (default 60 s). */
  healthMaxLagMs?: number;
  /**
   * While this returns true, /healthz answers 503 with status "starting" (the replications are not all
   * running yet, e.g. during `replicate -restore-if-db-not-exists`'s restore): a probe must not see a
   * process that has not started replicating as healthy.
   */
  starting?: () => boolean;
  /**
   * Where the metrics are registered (default: a registry of its own). Anything else in it is served too
   * (the CLI adds Node's process metrics this way).
   */
  registry?: Registry;
  logger?: Logger;
}

export interface MetricsServer {
  /** The address actually bound (port 0 in `addr` picks a free one). */
  readonly host: string;
  readonly port: number;
  /** A URL to reach it (an all-interfaces bind is reached through localhost). */
  readonly url: string;
  close(): Promise<void>;
}

/** Starts listening; rejects (ReplicateError 'IO') when the address cannot be bound, e.g. a port in use. */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const bind = typeof opts.addr === 'string' ? parseBindAddress(opts.addr) : opts.addr;
  const log = opts.logger ?? nullLogger;
  const registry = opts.registry ?? new (promClient().Registry)();
  const reader = new StatusReader(opts.replications);
  const unregister = registerReplicationMetrics(registry, reader);
  const maxLagMs = opts.healthMaxLagMs ?? DEFAULT_HEALTH_MAX_LAG_MS;

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error('metrics request failed', { path: req.url, error: describeError(err) });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('internal error\n');
    });
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      const text = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text);
      return;
    }
    if (path === '/healthz') {
      const report = opts.starting?.() ? startingReport(maxLagMs) : evaluateHealth(await reader.read(), maxLagMs);
      res
        .writeHead(report.healthy ? 200 : 503, { 'content-type': 'application/json' })
        .end(req.method === 'HEAD' ? undefined : `${JSON.stringify(report)}\n`);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
  }

  try {
    await listen(server, bind);
  } catch (err) {
    unregister();
    const where = `${bind.host ?? ''}:${bind.port}`;
    const detail = errnoCode(err) === 'EADDRINUSE' ? 'address already in use' : describeError(err);
    throw new ReplicateError('IO', `metrics server: listening on ${where}: ${detail}`, { cause: err, details: { addr: where } });
  }
  // Requests in flight must not keep a process alive that is done otherwise; the caller decides.
  server.unref();
  const address = server.address() as AddressInfo;
  const host = bind.host ?? 'localhost';
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
      unregister();
    });
    return closing;
  };
  if (typeof opts.replications !== 'function') closeWhenAllClosed(opts.replications, close);
  log.info('serving metrics', { addr: `${host}:${address.port}`, paths: '/metrics,/healthz' });
  return {
    host,
    port: address.port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`,
    close,
  };
}

function listen(server: Server, bind: BindAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen({ port: bind.port, ...(bind.host !== undefined ? { host: bind.host } : {}) }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeWhenAllClosed(replications: readonly Replication[], close: () => Promise<void>): void {
  let open = replications.length;
  for (const r of replications) {
    r.once('close', () => {
      if (--open === 0) void close();
    });
  }
}
