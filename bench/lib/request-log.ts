/**
 * Server-side request accounting for the idle benchmark: counts by bucket (one bucket per tool), by
 * phase (start-up, the idle window, shutdown) and by kind, plus the first few requests of each phase
 * so the report can say what they were. Counters and a capped sample, not a log of every request:
 * memory stays bounded however long or busy a run is.
 */
import { performance } from 'node:perf_hooks';
import { completesSnapshot, zeroCounts, type KindCounts, type S3Request } from './s3-requests.js';

/** Requests kept per bucket and phase for the report. */
const SAMPLE_LIMIT = 20;

interface BucketState {
  phase: string;
  counts: Map<string, KindCounts>;
  samples: Map<string, S3Request[]>;
  snapshotAt: number | undefined;
  /** Snapshot objects completed (one per database replicated into the bucket). */
  snapshots: number;
}

export class RequestLog {
  private readonly buckets = new Map<string, BucketState>();
  private readonly listeners = new Set<() => void>();

  private state(bucket: string): BucketState {
    let s = this.buckets.get(bucket);
    if (!s) {
      s = { phase: 'unattributed', counts: new Map(), samples: new Map(), snapshotAt: undefined, snapshots: 0 };
      this.buckets.set(bucket, s);
    }
    return s;
  }

  /** For the server's onRequest hook. */
  readonly onRequest = (r: S3Request): void => {
    const s = this.state(r.bucket);
    let c = s.counts.get(s.phase);
    if (!c) s.counts.set(s.phase, (c = zeroCounts()));
    c[r.kind]++;
    let sample = s.samples.get(s.phase);
    if (!sample) s.samples.set(s.phase, (sample = []));
    if (sample.length < SAMPLE_LIMIT) sample.push(r);
    this.notify();
  };

  /** For the server's onResponse hook: notes when a bucket's first snapshot object is complete. */
  readonly onResponse = (r: S3Request, status: number): void => {
    const s = this.state(r.bucket);
    if (completesSnapshot(r, status)) {
      s.snapshots++;
      s.snapshotAt ??= performance.now();
      this.notify();
    }
  };

  private notify(): void {
    for (const l of this.listeners) l();
  }

  /** From now on, the bucket's requests count towards `phase`. */
  setPhase(bucket: string, phase: string): void {
    this.state(bucket).phase = phase;
  }

  counts(bucket: string, phase: string): KindCounts {
    return { ...(this.buckets.get(bucket)?.counts.get(phase) ?? zeroCounts()) };
  }

  samples(bucket: string, phase: string): S3Request[] {
    return this.buckets.get(bucket)?.samples.get(phase) ?? [];
  }

  /** Buckets that received requests, other than `known` (requests nobody was expected to make). */
  strayBuckets(known: string[]): string[] {
    return [...this.buckets.keys()].filter((b) => !known.includes(b));
  }

  /** Resolves once a snapshot object in `bucket` is complete; rejects after `timeoutMs` or when `abort` rejects. */
  /** Resolves once `count` snapshot objects (default 1) are complete in the bucket. */
  waitForSnapshot(bucket: string, timeoutMs: number, abort: Promise<never>, count = 1): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        if (this.state(bucket).snapshots >= count) done();
      };
      const timer = setTimeout(
        () => done(new Error(`${this.state(bucket).snapshots} of ${count} snapshots in bucket ${bucket} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      abort.catch((e: unknown) => done(e instanceof Error ? e : new Error(String(e))));
      this.listeners.add(check);
      check();
    });
  }
}
