/**
 * An HTTP proxy on 127.0.0.1 in front of a test server that can misbehave on demand: answer 403, 500 or 503,
 * drop the connection, or stall (accept and never answer). Counts what it did, so tests can prove the
 * fault was really hit.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** `stallBody`: forwards the request and the response headers, then never sends the body. */
export type FaultMode = 'pass' | 'error403' | 'error500' | 'error503' | 'drop' | 'stall' | 'stallBody';

export interface FaultProxy {
  endpoint: string;
  mode: FaultMode;
  faults: number;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const stalled = new Set<ServerResponse>();
  const proxy: FaultProxy = { endpoint: '', mode: 'pass', faults: 0, close: async () => undefined };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const mode = proxy.mode;
    if (mode !== 'pass' && mode !== 'stallBody') {
      proxy.faults++;
      req.resume(); // drain the body
      if (mode === 'error403' || mode === 'error500' || mode === 'error503') {
        const [status, code] = mode === 'error403' ? [403, 'AccessDenied'] : mode === 'error500' ? [500, 'InternalError'] : [503, 'SlowDown'];
        res.writeHead(status, { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0"?><Error><Code>${code}</Code><Message>injected</Message></Error>`);
      } else if (mode === 'drop') {
        req.socket.destroy();
      } else {
        stalled.add(res); // never answered; closed with the proxy
      }
      return;
    }
    const out = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (mode === 'stallBody') {
          proxy.faults++;
          res.flushHeaders();
          up.resume(); // the body is read from upstream and dropped
          stalled.add(res);
          return;
        }
        up.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = async () => {
    for (const r of stalled) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return proxy;
}
