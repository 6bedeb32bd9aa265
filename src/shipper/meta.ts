/**
 * The local meta directory, in Litestream v0.3.13's layout so that either tool can take over from the
 * other on the same database:
 *
 *   .<db>-litestream/generation                                   current generation + "\n"
 *   .<db>-litestream/generations/<generation>/wal/<index>.wal     shadow WAL files
 *   .<db>-litestream/restored-from.json                           ours only: left by a restore (restore-marker.ts)
 *
 * The only module that joins paths inside the meta directory.
 */
import { randomBytes } from 'node:crypto';
import { chownSync, closeSync, mkdirSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { chown, open, readdir, readFile, rm, mkdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errnoCode } from '../errors.js';
import { writeFileAtomic, writeFileAtomicSync } from '../internal/atomic-file.js';
import type { LocalFileAccess } from './shadow-wal.js';
import { isGenerationName, parseShadowWalName, shadowWalName } from '../layout.js';

export function defaultMetaPath(dbPath: string): string {
  return join(dirname(dbPath), `.${basename(dbPath)}-litestream`);
}

/** A new random generation name: 16 lowercase hex digits. */
export function newGenerationName(): string {
  return randomBytes(8).toString('hex');
}

export class MetaDir {
  constructor(readonly path: string) {}

  private generationFile(): string {
    return join(this.path, 'generation');
  }

  /** Litestream ignores unknown files here, so the marker does not disturb a takeover. */
  restoreMarkerPath(): string {
    return join(this.path, 'restored-from.json');
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

  async writeGeneration(generation: string): Promise<void> {
    await writeFileAtomic(this.generationFile(), [Buffer.from(`${generation}\n`)], { dirMode: 0o755, fileMode: 0o644 });
  }

  /** The same, synchronously (while SQLite's write lock is held). */
  writeGenerationSync(generation: string, access: LocalFileAccess = {}): void {
    writeFileAtomicSync(this.generationFile(), Buffer.from(`${generation}\n`), {
      dirMode: access.dirMode ?? 0o755,
      fileMode: access.fileMode ?? 0o644,
      uid: access.uid,
      gid: access.gid,
    });
  }

  async clearGeneration(): Promise<void> {
    await rm(this.generationFile(), { force: true });
  }

  async ensure(access: LocalFileAccess = {}): Promise<void> {
    await mkdir(this.path, { recursive: true, mode: access.dirMode ?? 0o755 });
    if (access.uid !== undefined && access.gid !== undefined) await chown(this.path, access.uid, access.gid);
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

  removeGenerationDirSync(generation: string): void {
    rmSync(join(this.generationsDir(), generation), { recursive: true, force: true });
  }

  /** Removes whatever an earlier life of `generation` left here (shadow files of another database). */
  async removeGenerationDir(generation: string): Promise<void> {
    await rm(join(this.generationsDir(), generation), { recursive: true, force: true });
  }

  async createGenerationDir(generation: string): Promise<void> {
    await mkdir(this.shadowWalDir(generation), { recursive: true, mode: 0o755 });
  }

  createGenerationDirSync(generation: string, access: LocalFileAccess = {}): void {
    mkdirSync(this.shadowWalDir(generation), { recursive: true, mode: access.dirMode ?? 0o755 });
    if (access.uid !== undefined && access.gid !== undefined) {
      for (const d of [this.generationsDir(), join(this.generationsDir(), generation), this.shadowWalDir(generation)]) chownSync(d, access.uid, access.gid);
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
