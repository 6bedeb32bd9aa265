/**
 * The replica's answer when the shipper asks whether a restored generation may continue (see
 * src/shipper/restore-continuation.ts): apart from the upload loop because it runs once, at the
 * shipper's first start, and only reads the remote.
 */
import { collect, type ReplicaClient } from '../client/replica-client.js';
import { isReplicateError } from '../errors.js';
import { markerPos, type RestoreMarker } from '../meta/restore-marker.js';
import { comparePos, formatPos, type Pos } from '../pos.js';

/**
 * Whether the shipper may continue a restored generation: only if this replica ends exactly where the
 * restore ended. Past it, someone else wrote to the generation since, and uploading our writes after
 * theirs would interleave two histories. Returns why not, or undefined.
 */
export async function checkRestoredPosition(
  name: string,
  client: ReplicaClient,
  calcPos: (generation: string) => Promise<Pos>,
  marker: RestoreMarker,
): Promise<string | undefined> {
  const snapshots = await collect(client.snapshots(marker.generation));
  if (snapshots.length === 0) return `replica ${name} holds no snapshot of generation ${marker.generation}`;
  let end: Pos;
  try {
    end = await calcPos(marker.generation);
  } catch (err) {
    if (isReplicateError(err, 'AGE_IDENTITY')) return `replica ${name} cannot read where it ends: ${err.message}`;
    throw err;
  }
  const restored = markerPos(marker);
  if (comparePos(end, restored) !== 0) {
    return `replica ${name} moved on since the restore (it ends at ${formatPos(end)}, the restore at ${formatPos(restored)})`;
  }
  return undefined;
}
