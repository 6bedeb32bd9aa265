/**
 * An HTTP proxy on 127.0.0.1 that holds every request back for a fixed delay before forwarding it: a
 * local S3 server answers in well under a millisecond, a real one across a network in tens of
 * milliseconds, and a restore of a long history is one request per WAL segment. Requests are not
 * queued behind each other (a client that runs several at once gets them all delayed, not serialised).
 */
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LatencyProxy {
  endpoint: string;
  requests: number;
  close(): Promise<void>;
}

export async function startLatencyProxy(target: string, delayMs: number): Promise<LatencyProxy> {
  const upstream = new URL(target);
  const state = { requests: 0 };
  const server = createServer((req, res) => {
    state.requests++;
    setTimeout(() => {
      const fwd = request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      fwd.on('error', () => res.destroy());
      req.pipe(fwd);
    }, delayMs);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get requests() {
      return state.requests;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
