/**
 * The replica object layout of Litestream v0.3 — the only module that knows object names:
 *
 *   <root>/generations/<generation>/snapshots/<index hex8>.snapshot.lz4
 *   <root>/generations/<generation>/wal/<index hex8>_<offset hex8>.wal.lz4
 *   <root>/lease/<version hex16>.json            (ours: the replica's lease on the file backend, see
 *   <root>/lease/lease.json                       src/lease/; on object stores one object, and the
 *   <root>/lease/probe-<hex>                       start-up probe of conditional writes, removed after it;
 *                                                  Litestream looks only under generations/ and never
 *                                                  sees any of them)
 *
 * Keys are joined with POSIX `path.join` semantics (which clean `//`, `.` and `..` the way Go's
 * `path.Join` does), so a root of "" or "." gives keys that start at `generations/…`.
 */
import { posix } from 'node:path';

/** Highest shadow WAL index; reaching it forces a new generation. */
export const MAX_INDEX = 0x7fffffff;
/** Offsets and indexes are named with exactly 8 hex digits. */
export const MAX_NAMED_VALUE = 0xffffffff;

const GENERATION_RE = /^[0-9a-f]{16}$/;
const SNAPSHOT_RE = /^([0-9a-f]{8})\.snapshot\.lz4$/;
const WAL_SEGMENT_RE = /^([0-9a-f]{8})_([0-9a-f]{8})\.wal\.lz4$/;
const SHADOW_WAL_RE = /^([0-9a-f]{8})\.wal$/;
const LEASE_RECORD_RE = /^([0-9a-f]{16})\.json$/;

export const GENERATIONS_DIR = 'generations';
export const SNAPSHOTS_DIR = 'snapshots';
export const WAL_DIR = 'wal';
/** Beside generations/: the lease's records (file backend) or the prefix of its object (object stores). */
export const LEASE_DIR = 'lease';
/** The lease's one object in an object store (conditional writes on it; see src/lease/). */
export const LEASE_OBJECT = 'lease.json';

/** Lowercase hex only: directories such as `ABCDEF…` are not generations (Litestream skips them too). */
export function isGenerationName(name: string): boolean {
  return GENERATION_RE.test(name);
}

export function formatHex8(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > MAX_NAMED_VALUE) {
    throw new RangeError(`value out of range for an 8-digit hex name: ${value}`);
  }
  return value.toString(16).padStart(8, '0');
}

export function snapshotName(index: number): string {
  return `${formatHex8(index)}.snapshot.lz4`;
}

export function walSegmentName(index: number, offset: number): string {
  return `${formatHex8(index)}_${formatHex8(offset)}.wal.lz4`;
}

export function shadowWalName(index: number): string {
  return `${formatHex8(index)}.wal`;
}

/** Parses a snapshot's base name; anything else (temp files, uppercase hex) gives undefined. */
export function parseSnapshotName(base: string): { index: number } | undefined {
  const m = SNAPSHOT_RE.exec(base);
  return m ? { index: parseInt(m[1]!, 16) } : undefined;
}

export function parseWalSegmentName(base: string): { index: number; offset: number } | undefined {
  const m = WAL_SEGMENT_RE.exec(base);
  return m ? { index: parseInt(m[1]!, 16), offset: parseInt(m[2]!, 16) } : undefined;
}

export function parseShadowWalName(base: string): { index: number } | undefined {
  const m = SHADOW_WAL_RE.exec(base);
  return m ? { index: parseInt(m[1]!, 16) } : undefined;
}

/** A lease record's name on the file backend: its version, 16 hex digits, so names sort as versions. */
export function leaseRecordName(version: number): string {
  if (!Number.isSafeInteger(version) || version < 1) throw new RangeError(`invalid lease record version: ${version}`);
  return `${version.toString(16).padStart(16, '0')}.json`;
}

export function parseLeaseRecordName(base: string): { version: number } | undefined {
  const m = LEASE_RECORD_RE.exec(base);
  if (!m) return undefined;
  const version = parseInt(m[1]!, 16);
  return Number.isSafeInteger(version) && version >= 1 ? { version } : undefined;
}

/** Key builders for one replica root. `join` is POSIX for object stores; the file backend passes its own. */
export class ReplicaLayout {
  constructor(
    readonly root: string,
    // node:path's functions do not use `this` (its types declare them as methods).
    // eslint-disable-next-line @typescript-eslint/unbound-method
    private readonly join: (...parts: string[]) => string = posix.join,
  ) {}

  generationsDir(): string {
    return this.join(this.root, GENERATIONS_DIR);
  }

  generationDir(generation: string): string {
    assertGeneration(generation);
    return this.join(this.root, GENERATIONS_DIR, generation);
  }

  snapshotsDir(generation: string): string {
    return this.join(this.generationDir(generation), SNAPSHOTS_DIR);
  }

  walDir(generation: string): string {
    return this.join(this.generationDir(generation), WAL_DIR);
  }

  snapshotPath(generation: string, index: number): string {
    return this.join(this.snapshotsDir(generation), snapshotName(index));
  }

  walSegmentPath(generation: string, index: number, offset: number): string {
    return this.join(this.walDir(generation), walSegmentName(index, offset));
  }

  /** file: the directory of lease records. */
  leaseDir(): string {
    return this.join(this.root, LEASE_DIR);
  }

  leaseRecordPath(version: number): string {
    return this.join(this.leaseDir(), leaseRecordName(version));
  }

  /** Object stores: the lease object. */
  leaseObjectKey(): string {
    return this.join(this.leaseDir(), LEASE_OBJECT);
  }

  /** Object stores: a throwaway object for the start-up probe of conditional writes (src/client/lease-probe.ts). */
  leaseProbeKey(id: string): string {
    return this.join(this.leaseDir(), `probe-${id}`);
  }
}

export function assertGeneration(generation: string): void {
  if (!isGenerationName(generation)) {
    throw new RangeError(`invalid generation name: ${JSON.stringify(generation)} (want 16 lowercase hex digits)`);
  }
}
