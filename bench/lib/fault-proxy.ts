/**
 * An HTTP proxy on 127.0.0.1 in front of a test server that can misbehave on demand: answer 403, 500 or 503,
 * drop the connection, or stall (accept and never answer). Counts what it did, so tests can prove the
 * fault was really hit. A gate can also hold requests back until a number of them are in flight at
 * once, to show how many a client runs concurrently.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** `stallBody`: forwards the request and the response headers, then never sends the body. */
export type FaultMode = 'pass' | 'error403' | 'error500' | 'error503' | 'drop' | 'stall' | 'stallBody';

export interface FaultProxy {
  endpoint: string;
  mode: FaultMode;
  faults: number;
  /**
   * The next `count` requests `match` selects reach the store, which handles them, but their answers
   * are lost (the connection to the client is cut when the store answers): a lost reply, whose outcome
   * the client cannot know. Counted in `faults`.
   */
  loseReplies(match: (method: string, url: string) => boolean, count: number): void;
  /** Counts (and holds back) the requests `match` selects; see RequestGate. Replaces any earlier gate. */
  gate(match: (method: string, url: string) => boolean, barrier: number): RequestGate;
  close(): Promise<void>;
}

/**
 * Matching requests are held until `barrier` of them are in flight at once, then all pass, now and
 * later (so a client running N at a time shows exactly N). A client that never gets there is released
 * after a safety delay, with `reached` left false. In flight: from arrival to the end of the response.
 */
export interface RequestGate {
  barrier: number;
  reached: boolean;
  total: number;
  inFlight: number;
  maxInFlight: number;
}

const GATE_SAFETY_MS = 10_000;

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const stalled = new Set<ServerResponse>();
  let losing: { match: (method: string, url: string) => boolean; left: number } | undefined;
  let gate:
    | { match: (method: string, url: string) => boolean; state: RequestGate; held: (() => void)[]; open: boolean; timer?: NodeJS.Timeout }
    | undefined;
  const openGate = () => {
    if (!gate || gate.open) return;
    gate.open = true;
    clearTimeout(gate.timer);
    for (const release of gate.held.splice(0)) release();
  };
  const proxy: FaultProxy = {
    endpoint: '',
    mode: 'pass',
    faults: 0,
    gate: (match, barrier) => {
      openGate();
      const state: RequestGate = { barrier, reached: false, total: 0, inFlight: 0, maxInFlight: 0 };
      gate = { match, state, held: [], open: false };
      return state;
    },
    loseReplies: (match, count) => {
      losing = { match, left: count };
    },
    close: async () => undefined,
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const g = gate?.match(req.method ?? '', req.url ?? '') ? gate : undefined;
    if (!g) return handle(req, res);
    g.state.total++;
    g.state.maxInFlight = Math.max(g.state.maxInFlight, ++g.state.inFlight);
    res.once('close', () => g.state.inFlight--);
    if (g.open) return handle(req, res);
    req.pause();
    g.held.push(() => handle(req, res));
    g.timer ??= setTimeout(openGate, GATE_SAFETY_MS);
    if (g.held.length >= g.state.barrier) {
      g.state.reached = true;
      openGate();
    }
  });
  function handle(req: IncomingMessage, res: ServerResponse): void {
    const mode = proxy.mode;
    if (mode !== 'pass' && mode !== 'stallBody') {
      proxy.faults++;
      req.resume(); // drain the body
      if (mode === 'error403' || mode === 'error500' || mode === 'error503') {
        const [status, code] =
          mode === 'error403' ? [403, 'AccessDenied'] : mode === 'error500' ? [500, 'InternalError'] : [503, 'SlowDown'];
        res.writeHead(status, { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0"?><Error><Code>${code}</Code><Message>injected</Message></Error>`);
      } else if (mode === 'drop') {
        req.socket.destroy();
      } else {
        stalled.add(res); // never answered; closed with the proxy
      }
      return;
    }
    const lose = losing !== undefined && losing.left > 0 && losing.match(req.method ?? '', req.url ?? '');
    if (lose) losing!.left--;
    const out = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      if (lose) {
        proxy.faults++;
        up.resume();
        req.socket.destroy();
        return;
      }
      res.writeHead(up.statusCode ?? 502, up.headers);
      if (mode === 'stallBody') {
        proxy.faults++;
        res.flushHeaders();
        up.resume(); // the body is read from upstream and dropped
        stalled.add(res);
        return;
      }
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = async () => {
    openGate();
    for (const r of stalled) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return proxy;
}
