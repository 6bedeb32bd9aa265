/**
 * Everything the CLI takes from its process, passed in so that commands run in-process in tests and the
 * library below never touches `process`.
 */
import type { SignalLatch } from './signal-latch.js';

export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: Record<string, string | undefined>;
  cwd: string;
  homeDir: string;
  /** Aborts what a command is waiting on (tests; the executable stops commands by their signals). */
  signal?: AbortSignal;
  /** SIGINT/SIGTERM caught by the executable since its first line (see signal-latch.ts). */
  signals?: SignalLatch;
}

export function write(stream: NodeJS.WritableStream, text: string): void {
  stream.write(text);
}

/** Per-run state shared by main and the command actions. */
export interface RunContext {
  /** Set by a command that finished with partial failures (e.g. one replica of several unreadable). */
  exitCode: number;
}
