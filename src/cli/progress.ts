/** A progress bar for long restores on a terminal; nothing at all when stderr is not a TTY. */
import { createRequire } from 'node:module';
import type * as CliProgress from 'cli-progress';
import type { RestoreProgress } from '../replica/restore.js';
import { monotonicMs } from '../internal/clock.js';
import type { CliIo } from './io.js';

export interface ProgressDisplay {
  update: (p: RestoreProgress) => void;
  stop: () => void;
}

/** Databases smaller than this restore in well under a second: no bar. */
const MIN_BYTES_FOR_BAR = 8 * 1024 * 1024;

export function createProgress(io: CliIo, label: string): ProgressDisplay | undefined {
  if (!io.stderr.isTTY) return undefined;
  // Loaded only for a terminal (~7 ms of start-up otherwise spent for nothing).
  const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof CliProgress;
  let bar: CliProgress.SingleBar | undefined;
  let lastRender = -Infinity;
  return {
    update(p) {
      if (!bar) {
        if (p.bytesTotal < MIN_BYTES_FOR_BAR) return;
        bar = new cliProgress.SingleBar(
          {
            stream: io.stderr,
            format: `${label} |{bar}| {percentage}% | {doneMb}/{totalMb} MB | {phase} {indexes}`,
            hideCursor: true,
            clearOnComplete: true,
            noTTYOutput: false,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(p.bytesTotal, 0, fields(p));
      }
      const now = monotonicMs();
      if (now - lastRender < 100 && p.phase === 'download') return;
      lastRender = now;
      bar.update(p.bytesDone, fields(p));
    },
    stop() {
      bar?.stop();
    },
  };
}

function fields(p: RestoreProgress) {
  return {
    doneMb: (p.bytesDone / 1048576).toFixed(1),
    totalMb: (p.bytesTotal / 1048576).toFixed(1),
    phase: p.phase,
    indexes: p.indexesTotal > 0 ? `(WAL ${p.indexesApplied}/${p.indexesTotal})` : '',
  };
}
