/**
 * The local S3 server as a child process, for the restore bench: that bench times each restore with a
 * blocking spawnSync, during which an in-process server could not answer.
 *
 * Protocol, one JSON line each way: on start it prints {"endpoint","version"}; each "counts" line on
 * stdin is answered with the requests by kind since the previous "counts" (summed over buckets). When
 * stdin ends (the bench finished, or died) it stops the server and exits, so it never outlives the bench.
 */
import { createInterface } from 'node:readline';
import { startS3Server } from './s3-server.js';
import { zeroCounts } from './s3-requests.js';

let counts = zeroCounts();
const server = await startS3Server({ onRequest: (r) => counts[r.kind]++ });
const reply = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
reply({ endpoint: server.endpoint, version: server.version });

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === 'counts') {
    reply(counts);
    counts = zeroCounts();
  }
}
await server.stop();
