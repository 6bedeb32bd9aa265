import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ReplicateError } from '../../../src/errors.js';
import { MetaDir } from '../../../src/meta/meta-dir.js';
import {
  RESTORE_MARKER_VERSION,
  fileDigest,
  readContinuedFrom,
  readRestoreMarker,
  removeRestoreMarker,
  writeContinuedFrom,
  writeRestoreMarker,
  type RestoreMarker,
} from '../../../src/meta/restore-marker.js';
import { tempDirs } from '../../helpers/after-each.js';

const tmp = tempDirs('stn-marker-');

function meta(): MetaDir {
  const d = tmp();
  return new MetaDir(join(d, '.db-litestream'));
}

const marker: RestoreMarker = {
  version: RESTORE_MARKER_VERSION,
  generation: '0123456789abcdef',
  index: 3,
  offset: 4152,
  replica: 'file',
  location: '/r',
  size: 8192,
  sha256: 'a'.repeat(64),
  restoredAt: '2026-01-01T00:00:00.000Z',
};

describe('restore marker', () => {
  it('round-trips, and is written atomically (no temp file left) in the meta directory', async () => {
    const m = meta();
    await writeRestoreMarker(m, marker);
    expect(await readRestoreMarker(m)).toEqual(marker);
    expect(readdirSync(m.path)).toEqual(['restored-from.json']);
    await removeRestoreMarker(m);
    expect(await readRestoreMarker(m)).toBeUndefined();
  });

  it('rejects a marker that is not JSON or not a version 1 marker with INVALID_ARGUMENT', async () => {
    const m = meta();
    await m.ensure();
    writeFileSync(m.restoreMarkerPath(), '{not json');
    await expect(readRestoreMarker(m)).rejects.toSatisfy((e) => e instanceof ReplicateError && e.code === 'INVALID_ARGUMENT');
    writeFileSync(m.restoreMarkerPath(), JSON.stringify({ ...marker, generation: 'XYZ' }));
    await expect(readRestoreMarker(m)).rejects.toSatisfy((e) => e instanceof ReplicateError && e.code === 'INVALID_ARGUMENT');
    writeFileSync(m.restoreMarkerPath(), JSON.stringify({ ...marker, version: 2 }));
    await expect(readRestoreMarker(m)).rejects.toSatisfy((e) => e instanceof ReplicateError && e.code === 'INVALID_ARGUMENT');
  });

  it('digests a file in chunks to the same SHA-256 as one hash of it', async () => {
    const m = meta();
    await m.ensure();
    const path = join(m.path, 'f');
    const data = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(path, data);
    expect(await fileDigest(path)).toEqual({ size: data.length, sha256: createHash('sha256').update(data).digest('hex') });
  });

  it('keeps the continued-from position inside the generation directory, outside wal/', async () => {
    const m = meta();
    const pos = { generation: marker.generation, index: 3, offset: 4152 };
    expect(await readContinuedFrom(m, pos.generation)).toBeUndefined();
    await writeContinuedFrom(m, pos);
    expect(await readContinuedFrom(m, pos.generation)).toEqual(pos);
    expect(existsSync(m.shadowWalDir(pos.generation))).toBe(false);
    expect(await readContinuedFrom(m, 'fedcba9876543210')).toBeUndefined();
  });
});
