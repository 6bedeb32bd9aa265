/** Ports on 127.0.0.1 for tests. */
import { createServer } from 'node:net';

/**
 * A port nothing listens on right now: free for a server a test starts (Litestream's `addr`), or, left
 * unused, one whose connections are refused (a store that cannot be reached).
 */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
