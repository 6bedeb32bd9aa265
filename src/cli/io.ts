/**
 * Everything the CLI takes from its process, passed in so that commands run in-process in tests and the
 * library below never touches `process`.
 */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: Record<string, string | undefined>;
  cwd: string;
  homeDir: string;
  /** Aborted on SIGINT/SIGTERM by the bin shim. */
  signal?: AbortSignal;
}

export function write(stream: NodeJS.WritableStream, text: string): void {
  stream.write(text);
}

/** Per-run state shared by main and the command actions. */
export interface RunContext {
  /** Set by a command that finished with partial failures (e.g. one replica of several unreadable). */
  exitCode: number;
}
