/**
 * examples/embedded/server.mjs, the deployment kit's Node server that embeds replication and reuses a
 * litestream.yml, run as a process: it serves writes, uploads them on SIGTERM, comes back with every
 * note after its volume is lost, and refuses to start when its store cannot be reached.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/free-port.js';
import { LoggedProcess } from '../helpers/oracle.js';

const root = join(import.meta.dirname, '..', '..');
const server = join(root, 'examples', 'embedded', 'server.mjs');
const dir = mkdtempSync(join(tmpdir(), 'stn-embedded-server-'));
const procs: LoggedProcess[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function start(config: string): LoggedProcess {
  const child = spawn(process.execPath, [server], {
    cwd: join(root, 'examples', 'embedded'),
    env: { PATH: process.env.PATH ?? '', LITESTREAM_CONFIG: config, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const p = new LoggedProcess('', child);
  procs.push(p);
  return p;
}

async function port(p: LoggedProcess): Promise<number> {
  const i = await p.waitForLog(/"msg":"listening"/, 0, 30_000);
  return (JSON.parse(p.lines[i]!) as { port: number }).port;
}

describe('examples/embedded/server.mjs', () => {
  const data = join(dir, 'data');
  const dbPath = join(data, 'station.db');

  it('serves writes, uploads them on SIGTERM, and has them all back after its volume is lost', async () => {
    mkdirSync(data);
    const config = join(dir, 'litestream.yml');
    writeFileSync(
      config,
      `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: file\n        path: ${join(dir, 'replica')}\n        sync-interval: 10s\n`,
    );

    const first = start(config);
    const base = `http://127.0.0.1:${await port(first)}`;
    for (let i = 0; i < 5; i++) expect((await fetch(`${base}/notes`, { method: 'POST', body: `note ${i}` })).status).toBe(201);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(await first.stop('SIGTERM'), first.tail()).toBe(0);

    rmSync(data, { recursive: true, force: true });
    mkdirSync(data);
    const second = start(config);
    const again = `http://127.0.0.1:${await port(second)}`;
    expect(second.lines.join('\n')).toMatch(/database restored/);
    expect(await (await fetch(`${again}/notes`)).json()).toEqual({ count: 5 });
    expect(await second.stop('SIGTERM'), second.tail()).toBe(0);
  });

  it('does not start when its store cannot be reached and the database is missing', async () => {
    rmSync(data, { recursive: true, force: true });
    mkdirSync(data);
    const closed = await freePort();
    const config = join(dir, 'unreachable.yml');
    writeFileSync(
      config,
      `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: s3\n        bucket: b\n        endpoint: http://127.0.0.1:${closed}\n        region: us-east-1\n        access-key-id: k\n        secret-access-key: s\n`,
    );
    const p = start(config);
    expect(await p.exit, p.tail()).toBe(1);
    expect(p.lines.join('\n')).toMatch(/cannot restore the database; not starting/);
    expect(p.lines.join('\n')).not.toMatch(/listening/);
    expect(readdirSync(data)).toEqual([]);
  });
});
