/**
 * The local meta directory, in Litestream v0.3.13's layout so that either tool can take over from the
 * other on the same database:
 *
 *   .<db>-litestream/generation                                   current generation + "\n"
 *   .<db>-litestream/generations/<generation>/wal/<index>.wal     shadow WAL files
 *   .<db>-litestream/restored-from.json                           ours only: left by a restore (restore-marker.ts)
 *   .<db>-litestream/validation/<replica>/                        ours only: validation's scratch restore
 *
 * The only module that joins paths inside the meta directory. Everything created here takes the
 * database file's mode and owner (file-permissions.ts): shadow WAL files are page images of it.
 * It sits below both sides: the shipper writes here, and restore and validation (src/replica/) write
 * their own files here too, so neither side reaches into the other for the layout.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errnoCode } from '../errors.js';
import { writeFileAtomic, writeFileAtomicSync } from '../internal/atomic-file.js';
import {
  DEFAULT_FILE_PERMISSIONS,
  applyPermissions,
  mkdirWithPermissions,
  mkdirWithPermissionsSync,
  permissionsOf,
  type FilePermissions,
} from '../internal/file-permissions.js';
import { isGenerationName, parseShadowWalName, shadowWalName } from '../layout.js';

export function defaultMetaPath(dbPath: string): string {
  return join(dirname(dbPath), `.${basename(dbPath)}-litestream`);
}

/** Hex digits of a generation name that count down the milliseconds; the rest is random. */
const TIME_DIGITS = 11;
const RANDOM_DIGITS = 16 - TIME_DIGITS;
/** 2^44 - 1 ms: the countdown reaches 0 in the year 2527. */
const TIME_MAX = 16 ** TIME_DIGITS - 1;

/**
 * A new generation name: 16 lowercase hex digits that sort *descending* in creation order — 11 digits
 * of `TIME_MAX - now` (milliseconds of wall time) and 5 random ones — and strictly below `previous`
 * (the generation this one follows, when known), whatever the clock did since.
 *
 * Why descending: restore picks the generation whose newest object is newest, and on a tie (stores with
 * 1-second timestamps: Azure Blob, S3) Litestream v0.3.13 and we take the first in ascending name
 * order. So the newest lineage wins the tie with both tools. Wall time is the right clock here: the
 * order must hold across restarts; `previous` covers a clock that stepped back (or stood still).
 */
export function newGenerationName(previous?: string, nowMs: number = Date.now()): string {
  let time = TIME_MAX - Math.min(Math.max(0, Math.floor(nowMs)), TIME_MAX);
  let random = randomBytes(4).readUInt32BE(0) % 16 ** RANDOM_DIGITS;
  if (previous !== undefined && isGenerationName(previous)) {
    const prevTime = parseInt(previous.slice(0, TIME_DIGITS), 16);
    const prevRandom = parseInt(previous.slice(TIME_DIGITS), 16);
    if (time >= prevTime) {
      if (prevTime > 0) time = prevTime - 1;
      else if (prevRandom > 0) [time, random] = [0, random % prevRandom];
      // else previous is 0000000000000000: nothing sorts below it; the clock's name will have to do.
    }
  }
  return time.toString(16).padStart(TIME_DIGITS, '0') + random.toString(16).padStart(RANDOM_DIGITS, '0');
}

export class MetaDir {
  private perms: FilePermissions = DEFAULT_FILE_PERMISSIONS;

  constructor(readonly path: string) {}

  /**
   * Mode and owner for everything created here: the database file's (see adoptPermissionsOf);
   * 0600/0700 and the process's owner until then.
   */
  get permissions(): FilePermissions {
    return this.perms;
  }

  /** Takes mode and owner for what is created here from the database file (a stat; no descriptor opened). */
  async adoptPermissionsOf(dbPath: string): Promise<FilePermissions> {
    this.perms = permissionsOf(await stat(dbPath));
    return this.perms;
  }

  private generationFile(): string {
    return join(this.path, 'generation');
  }

  /** Litestream ignores unknown files here, so the marker does not disturb a takeover. */
  restoreMarkerPath(): string {
    return join(this.path, 'restored-from.json');
  }

  /** The note of a seq write our checkpoint is about to make (shipper/seq-write-note.ts); Litestream ignores it too. */
  seqWriteNotePath(): string {
    return join(this.path, 'seq-write.json');
  }

  generationsDir(): string {
    return join(this.path, 'generations');
  }

  /**
   * In a generation continued after a restore: the replica position the generation resumed from (the
   * restored state), whose index has no shadow file here. Outside `wal/`, where Litestream looks.
   */
  continuedFromPath(generation: string): string {
    return join(this.generationsDir(), generation, 'restored-from.json');
  }

  /** Validation's scratch directory for one replica (its name made safe for a path). */
  validationDir(replica: string): string {
    return join(this.path, 'validation', replica.replace(/[^A-Za-z0-9_.-]/g, '_'));
  }

  /** Creates a directory here (and its missing parents) with the directory mode and owner. */
  async ensureDir(dir: string): Promise<void> {
    await mkdirWithPermissions(dir, this.perms);
  }

  shadowWalDir(generation: string): string {
    return join(this.generationsDir(), generation, 'wal');
  }

  shadowWalPath(generation: string, index: number): string {
    return join(this.shadowWalDir(generation), shadowWalName(index));
  }

  /** The current generation, or undefined when there is none (missing file or not 16 hex digits). */
  async readGeneration(): Promise<string | undefined> {
    try {
      const text = (await readFile(this.generationFile(), 'utf8')).trim();
      return isGenerationName(text) ? text : undefined;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * A name for the next generation (see newGenerationName): below every generation this directory
   * knows — the `generation` file and the generation directories still here (the file is cleared when
   * continuity is lost while stopped; the directory stays until the new generation starts).
   */
  async newGenerationName(nowMs: number = Date.now()): Promise<string> {
    const known: string[] = [];
    const current = await this.readGeneration();
    if (current !== undefined) known.push(current);
    try {
      known.push(...(await readdir(this.generationsDir())).filter(isGenerationName));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    const lowest = known.sort()[0];
    return newGenerationName(lowest, nowMs);
  }

  /** The same as newGenerationName(), synchronously (while SQLite's write lock is held). */
  newGenerationNameSync(nowMs: number = Date.now()): string {
    const known: string[] = [];
    try {
      const text = readFileSync(this.generationFile(), 'utf8').trim();
      if (isGenerationName(text)) known.push(text);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    try {
      known.push(...readdirSync(this.generationsDir()).filter(isGenerationName));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    return newGenerationName(known.sort()[0], nowMs);
  }

  /** The same as writeGeneration(), synchronously (while SQLite's write lock is held). */
  writeGenerationSync(generation: string): void {
    writeFileAtomicSync(this.generationFile(), Buffer.from(`${generation}\n`), { permissions: this.perms });
  }

  async writeGeneration(generation: string): Promise<void> {
    await writeFileAtomic(this.generationFile(), [Buffer.from(`${generation}\n`)], { permissions: this.perms });
  }

  async clearGeneration(): Promise<void> {
    await rm(this.generationFile(), { force: true });
  }

  /**
   * Creates the meta directory, or gives an existing one (which may have been made 0755, e.g. by another
   * tool) the directory mode and owner: whatever is inside then is no more reachable than the database.
   */
  async ensure(): Promise<void> {
    await mkdirWithPermissions(this.path, this.perms);
    await applyPermissions(this.path, this.perms, 'dir').catch((err: unknown) => {
      if (errnoCode(err) !== 'EPERM') throw err; // someone else's directory (we are not root): left as it is
    });
  }

  /** Removes whatever an earlier life of `generation` left here (shadow files of another database). */
  async removeGenerationDir(generation: string): Promise<void> {
    await rm(join(this.generationsDir(), generation), { recursive: true, force: true });
  }

  async createGenerationDir(generation: string): Promise<void> {
    await mkdirWithPermissions(this.shadowWalDir(generation), this.perms);
  }

  /** Creates a generation's shadow WAL directory; the directories made are fsynced into their parents. */
  createGenerationDirSync(generation: string): void {
    const dir = this.shadowWalDir(generation);
    let existed = true;
    try {
      statSync(dir);
    } catch {
      existed = false;
    }
    mkdirWithPermissionsSync(dir, this.perms);
    if (!existed) for (const d of [this.path, this.generationsDir(), join(this.generationsDir(), generation)]) fsyncDirSync(d);
  }

  removeGenerationDirSync(generation: string): void {
    rmSync(join(this.generationsDir(), generation), { recursive: true, force: true });
  }

  /** fsyncs a shadow WAL file (replicas upload only what is durable). */
  async fsyncShadow(generation: string, index: number): Promise<void> {
    const h = await open(this.shadowWalPath(generation, index), 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  }

  /** The first 32 bytes of a shadow WAL file, or undefined when it is missing or shorter. */
  shadowHeaderSync(generation: string, index: number): Buffer | undefined {
    let fd: number;
    try {
      fd = openSync(this.shadowWalPath(generation, index), 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const b = Buffer.alloc(32);
      return readSync(fd, b, 0, 32, 0) === 32 ? b : undefined;
    } finally {
      closeSync(fd);
    }
  }

  /** Size of a file (0 when missing). */
  fileSizeSync(path: string): number {
    try {
      return statSync(path).size;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return 0;
      throw err;
    }
  }

  /** Shadow WAL indexes of a generation, ascending. */
  async shadowIndexes(generation: string): Promise<number[]> {
    try {
      const names = await readdir(this.shadowWalDir(generation));
      return names.flatMap((n) => parseShadowWalName(n)?.index ?? []).sort((a, b) => a - b);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
  }

  async shadowSize(generation: string, index: number): Promise<number | undefined> {
    try {
      return (await stat(this.shadowWalPath(generation, index))).size;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Removes every generation directory but `keep`, and crash leftovers (`*.tmp`). */
  async removeOtherGenerations(keep: string): Promise<void> {
    let names: string[] = [];
    try {
      names = await readdir(this.generationsDir());
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    for (const n of names) if (n !== keep) await rm(join(this.generationsDir(), n), { recursive: true, force: true });
  }

  /** Deletes shadow WAL files below `index` (they are in every replica); returns the indexes left, ascending. */
  async removeShadowsBelow(generation: string, index: number): Promise<number[]> {
    const left: number[] = [];
    for (const i of await this.shadowIndexes(generation)) {
      if (i < index) await rm(this.shadowWalPath(generation, i), { force: true });
      else left.push(i);
    }
    return left;
  }

  async removeTempFiles(): Promise<void> {
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.name.endsWith('.tmp')) await rm(p, { force: true });
      }
    };
    await walk(this.path);
  }
}

function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
