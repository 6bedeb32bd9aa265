/**
 * A round's plan, a pure function of its seed: the replicator's settings, the background load, and the
 * director's events (points in time, replicator kills, store outages, big transactions, VACUUM, a writer
 * killed mid-transaction), in order, with the gaps between them.
 */
import { Rng } from './random.js';
import type { Backend } from './store.js';

export const CHECKPOINT_MODES = ['PASSIVE', 'FULL', 'RESTART', 'TRUNCATE'] as const;
export type CheckpointMode = (typeof CHECKPOINT_MODES)[number];

export type WriterKind = 'node' | 'python' | 'cli';

/**
 * When the replicator is SIGKILLed: at a random moment under load; right after an upload was logged
 * (the next one is likely in flight); while a big transaction is being written (uncommitted frames in
 * the WAL); or just after it committed (the replicator is copying or uploading tens of MB).
 */
export type KillStyle = 'random' | 'on-upload' | 'big-inflight' | 'big-committed';

export type PlannedEvent =
  | { kind: 'pit' }
  | { kind: 'kill'; style: 'random' | 'on-upload'; restartAfterMs: number }
  | { kind: 'outage'; ms: number }
  | {
      kind: 'big';
      parts: number;
      partBytes: number;
      kill?: { style: 'big-inflight' | 'big-committed'; atPart: number; delayMs: number; restartAfterMs: number };
    }
  | { kind: 'vacuum' }
  | { kind: 'doomed'; rows: number; killAfterMs: number };

export interface LoadPlan {
  shortWriterEveryMs: [number, number];
  writerKinds: [WriterKind, number][];
  readerEveryMs: [number, number];
  readerHoldMs: [number, number];
  checkpointEveryMs: [number, number];
  longWriterPauseMs: [number, number];
  /** How long each long-lived writer lives, and the gap before the next one. */
  longWriterLivesMs: [number, number];
  longWriterGapMs: [number, number];
}

export interface ReplicatorSettings {
  syncInterval: string;
  monitorInterval?: string;
  minCheckpointPageCount?: number;
  snapshotInterval?: string;
}

export interface RoundPlan {
  seed: number;
  backend: Backend;
  seconds: number;
  settings: ReplicatorSettings;
  load: LoadPlan;
  /** Each event with the load-only time before it. */
  events: { gapMs: number; event: PlannedEvent }[];
}

export interface PlanOptions {
  /**
   * Only min-checkpoint-page-count values of 100 or more (or the default 1000): then a legitimate
   * checkpoint needs hundreds of new WAL pages, and the workload writes far fewer per second outside its
   * big transactions, so checkpoints per second measure the replicator's policy, not the workload.
   */
  calmCheckpoints?: boolean;
  /** Big transaction size range in MiB (default 10..40 on file replicas, 8..16 on cloud stores). */
  bigMiB?: [number, number];
}

export function planRound(seed: number, backend: Backend, seconds: number, opts: PlanOptions = {}): RoundPlan {
  const rng = new Rng(seed);
  const settings: ReplicatorSettings = {
    syncInterval: rng.pick(['100ms', '250ms', '500ms', '1s']),
    ...(rng.chance(0.5) ? { monitorInterval: rng.pick(['100ms', '250ms', '500ms']) } : {}),
  };
  const minPages = opts.calmCheckpoints
    ? rng.pick([undefined, 100, 200])
    : rng.weighted<number | undefined>([
        [undefined, 3],
        [200, 2],
        [100, 2],
        [20, 2],
        [5, 1],
      ]);
  if (minPages !== undefined) settings.minCheckpointPageCount = minPages;
  if (backend === 'file' && rng.chance(0.2)) settings.snapshotInterval = rng.pick(['4s', '7s']);

  const load: LoadPlan = {
    shortWriterEveryMs: [300, 2500],
    writerKinds: [
      ['node', 4],
      ['python', 3],
      ['cli', 3],
    ],
    readerEveryMs: [2500, 8000],
    readerHoldMs: [500, 4000],
    checkpointEveryMs: [3000, 9000],
    longWriterPauseMs: [40, 300],
    longWriterLivesMs: [2000, 8000],
    longWriterGapMs: [500, 4000],
  };

  const [bigLo, bigHi] = opts.bigMiB ?? (backend === 'file' ? [10, 40] : [8, 16]);
  const big = (kill?: Extract<PlannedEvent, { kind: 'big' }>['kill']): PlannedEvent => {
    const parts = rng.int(bigLo, bigHi);
    return { kind: 'big', parts, partBytes: 1024 * 1024, ...(kill ? { kill: { ...kill, atPart: Math.min(kill.atPart, parts) } } : {}) };
  };
  const events: PlannedEvent[] = [];
  const pits = seconds >= 40 ? 3 : seconds >= 12 ? 2 : 1;
  for (let i = 0; i < pits; i++) events.push({ kind: 'pit' });
  const kills = rng.weighted([
    [0, 2],
    [1, 5],
    [2, 3],
  ]);
  for (let i = 0; i < kills; i++) {
    const style = rng.weighted<KillStyle>([
      ['random', 4],
      ['on-upload', 2],
      ['big-inflight', 2],
      ['big-committed', 2],
    ]);
    const restartAfterMs = rng.int(100, 2000);
    if (style === 'random' || style === 'on-upload') events.push({ kind: 'kill', style, restartAfterMs });
    else events.push(big({ style, atPart: rng.int(1, bigHi), delayMs: rng.int(0, 400), restartAfterMs }));
  }
  if (!events.some((e) => e.kind === 'big')) events.push(big());
  if (rng.chance(0.6)) events.push({ kind: 'outage', ms: rng.int(1500, 5000) });
  if (rng.chance(0.6)) events.push({ kind: 'vacuum' });
  events.push({ kind: 'doomed', rows: rng.int(200, 1500), killAfterMs: rng.int(0, 300) });

  const ordered = rng.shuffle(events);
  const slot = (seconds * 1000) / (ordered.length + 1);
  return {
    seed,
    backend,
    seconds,
    settings,
    load,
    events: ordered.map((event) => ({ gapMs: Math.round(slot * rng.float(0.5, 1.5)), event })),
  };
}
