/**
 * Reading what a replica holds: generations with their snapshots and WAL segments. Shared by restore
 * and by the `generations`, `snapshots` and `wal` commands.
 */
import { collect, type OpOptions, type ReplicaClient } from '../client/replica-client.js';
import { describeError, ReplicateError } from '../errors.js';
import { generationBounds, restorableRange, type GenerationListing } from './restore-plan.js';
import type { AgeOptions } from './object-codec.js';

/**
 * What a listing or a restore reads from: a replica client together with the name it has in config (its
 * type when unnamed) and its age keys. Unlike a running `Replica`, it writes nothing and has no schedules.
 */
export interface ReplicaSource {
  readonly name: string;
  readonly client: ReplicaClient;
  /**
   * Its age keys (Litestream's `age:`), for restores: the identities decrypt encrypted objects. Listings
   * do not need them (names and sizes are not encrypted).
   */
  readonly age?: AgeOptions;
}

/** @deprecated The old name of {@link ReplicaSource}. */
export type NamedReplica = ReplicaSource;

export async function listGeneration(replica: ReplicaSource, generation: string, opts?: OpOptions): Promise<GenerationListing> {
  const [snapshots, segments] = await Promise.all([
    collect(replica.client.snapshots(generation, opts)),
    collect(replica.client.walSegments(generation, opts)),
  ]);
  return { replica: replica.name, generation, snapshots, segments };
}

/** Every generation of a replica (or just one), with its objects. Wraps failures with the replica's location. */
export async function listReplica(replica: ReplicaSource, opts: OpOptions & { generation?: string } = {}): Promise<GenerationListing[]> {
  try {
    let generations = await replica.client.generations(opts);
    if (opts.generation !== undefined) generations = generations.filter((g) => g === opts.generation);
    const out: GenerationListing[] = [];
    for (const g of generations) out.push(await listGeneration(replica, g, opts));
    return out;
  } catch (err) {
    if (err instanceof ReplicateError && err.code === 'ABORTED') throw err;
    throw new ReplicateError(
      err instanceof ReplicateError ? err.code : 'IO',
      `listing replica ${replica.name} (${replica.client.location}): ${describeError(err)}`,
      { cause: err, details: { replica: replica.name } },
    );
  }
}

export interface GenerationRow {
  replica: string;
  generation: string;
  /** The oldest object of any kind (Litestream's `start`). */
  start: Date;
  /** The newest object. */
  end: Date;
  /**
   * The oldest snapshot: a restore reaches any time from here to `end`. Later than `start` when retention
   * kept WAL segments written before the oldest snapshot it kept; undefined when the generation has no
   * snapshot (nothing in it can be restored).
   */
  restorableFrom?: Date;
}

/** One row per generation that holds anything, as the `generations` command shows them. */
export function generationRows(listings: readonly GenerationListing[]): GenerationRow[] {
  return listings.flatMap((g) => {
    const b = generationBounds(g);
    if (!b) return [];
    const first = restorableRange(g).first;
    return [
      { replica: g.replica, generation: g.generation, start: b.createdAt, end: b.updatedAt, ...(first ? { restorableFrom: first } : {}) },
    ];
  });
}
