/**
 * The local S3 server as a child process, for the restore bench: that bench times each restore with a
 * blocking spawnSync, during which an in-process server could not answer.
 *
 * With STN_BENCH_LATENCY_MS set, a proxy in this same process delays every request by that much (see
 * latency-proxy.ts): `endpoint` is then the proxy's, `directEndpoint` the server's own (for setting up).
 *
 * Protocol, one JSON line each way: on start it prints {"endpoint","directEndpoint","version"}; each "counts" line on
 * stdin is answered with the requests by kind since the previous "counts" (summed over buckets). When
 * stdin ends (the bench finished, or died) it stops the server and exits, so it never outlives the bench.
 */
import { createInterface } from 'node:readline';
import { startLatencyProxy } from './latency-proxy.js';
import { startS3Server } from './s3-server.js';
import { zeroCounts } from './s3-requests.js';

let counts = zeroCounts();
const server = await startS3Server({ onRequest: (r) => counts[r.kind]++ });
const reply = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const latencyMs = Number(process.env.STN_BENCH_LATENCY_MS ?? 0);
const proxy = latencyMs > 0 ? await startLatencyProxy(server.endpoint, latencyMs) : undefined;
reply({ endpoint: proxy?.endpoint ?? server.endpoint, directEndpoint: server.endpoint, version: server.version });

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === 'counts') {
    reply(counts);
    counts = zeroCounts();
  }
}
await proxy?.close();
await server.stop();
