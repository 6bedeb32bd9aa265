/**
 * A TCP proxy on 127.0.0.1 in front of a test server (the sftp tests' sshd), which can misbehave on
 * demand below any protocol: drop every connection (and refuse new ones), stall (connections stay
 * open and nothing is passed on, either way), or pass the client's bytes on slowly (a slow uplink). Counts connections and faults, so a test can prove the
 * client really reconnected and the fault was really hit.
 */
import { connect, createServer, type Socket } from 'node:net';

export type TcpFaultMode = 'pass' | 'drop' | 'stall';

export interface TcpProxy {
  host: string;
  port: number;
  /** `host:port`. */
  address: string;
  /**
   * 'drop' closes every open connection at once and each new one as it arrives; 'stall' stops passing
   * bytes on the open connections and on new ones (which stay stalled when the mode goes back to 'pass').
   */
  mode: TcpFaultMode;
  /** Bytes per second passed on from the client to the server (undefined: no limit): a slow uplink. */
  uplinkBytesPerSec: number | undefined;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Connections dropped or stalled. */
  readonly faults: number;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  stalled: boolean;
  /** Bytes from the client waiting for the uplink limit. */
  queue: Buffer[];
  pumping: boolean;
}

const TICK_MS = 10;

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  let mode: TcpFaultMode = 'pass';
  let connections = 0;
  let faults = 0;
  let uplink: number | undefined;
  // Passes queued client bytes on at the uplink rate, one tick's worth at a time.
  const pump = (p: Pair) => {
    if (p.pumping) return;
    p.pumping = true;
    const step = () => {
      if (p.stalled || !pairs.has(p)) return;
      let budget = uplink === undefined ? Infinity : Math.max(1, Math.floor((uplink * TICK_MS) / 1000));
      while (budget > 0 && p.queue.length > 0) {
        const head = p.queue[0]!;
        const n = Math.min(budget, head.length);
        p.upstream.write(head.subarray(0, n));
        budget -= n;
        if (n === head.length) p.queue.shift();
        else p.queue[0] = head.subarray(n);
      }
      if (p.queue.length === 0) p.pumping = false;
      else setTimeout(step, TICK_MS);
    };
    step();
  };
  const end = (p: Pair) => {
    p.client.destroy();
    p.upstream.destroy();
    pairs.delete(p);
  };
  const server = createServer((client) => {
    connections++;
    if (mode === 'drop') {
      faults++;
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    const pair: Pair = { client, upstream, stalled: mode === 'stall', queue: [], pumping: false };
    if (pair.stalled) faults++;
    pairs.add(pair);
    client.on('data', (d: Buffer) => {
      if (pair.stalled) return;
      pair.queue.push(d);
      pump(pair);
    });
    upstream.on('data', (d) => {
      if (!pair.stalled) client.write(d);
    });
    for (const s of [client, upstream]) {
      s.on('error', () => end(pair));
      s.on('close', () => end(pair));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    host: '127.0.0.1',
    port,
    address: `127.0.0.1:${port}`,
    get mode() {
      return mode;
    },
    set mode(m: TcpFaultMode) {
      mode = m;
      for (const p of [...pairs]) {
        if (m === 'drop') {
          faults++;
          end(p);
        } else if (m === 'stall' && !p.stalled) {
          faults++;
          p.stalled = true;
        }
      }
    },
    get uplinkBytesPerSec() {
      return uplink;
    },
    set uplinkBytesPerSec(rate: number | undefined) {
      uplink = rate;
    },
    get connections() {
      return connections;
    },
    get faults() {
      return faults;
    },
    close: async () => {
      for (const p of [...pairs]) end(p);
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
