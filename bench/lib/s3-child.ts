/** Parent side of s3-server-proc.ts: starts the local S3 server in a child process and talks to it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { KindCounts } from './s3-requests.js';

export class S3ServerChild {
  private constructor(
    private readonly child: ChildProcess,
    private readonly lines: AsyncIterator<string>,
    private readonly rl: Interface,
    /** Where the tools connect: the server, or the latency proxy in front of it. */
    readonly endpoint: string,
    /** The server itself, for setting up (no added latency). */
    readonly directEndpoint: string,
    readonly version: string,
  ) {}

  /** `latencyMs`: every request the tools make is held back this long (see latency-proxy.ts). */
  static async start(env: Record<string, string>, latencyMs = 0): Promise<S3ServerChild> {
    const script = join(dirname(fileURLToPath(import.meta.url)), 's3-server-proc.js');
    const child = spawn(process.execPath, [script], {
      env: { ...env, STN_BENCH_LATENCY_MS: String(latencyMs) },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const rl = createInterface({ input: child.stdout });
    const lines = rl[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) throw new Error('the S3 server process exited before reporting its endpoint');
    const { endpoint, directEndpoint, version } = JSON.parse(first.value) as { endpoint: string; directEndpoint: string; version: string };
    return new S3ServerChild(child, lines, rl, endpoint, directEndpoint, version);
  }

  /** Requests by kind the server received since the previous call. */
  async counts(): Promise<KindCounts> {
    this.child.stdin!.write('counts\n');
    const next = await this.lines.next();
    if (next.done) throw new Error('the S3 server process exited');
    return JSON.parse(next.value) as KindCounts;
  }

  /** Ends its stdin (it stops and exits); SIGKILL if it has not exited after 10 s. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin!.end();
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
    this.rl.close();
  }
}
