import { chmodSync, statSync, writeFileSync, chownSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../../src/internal/atomic-file.js';
import { dirModeFor, mkdirWithPermissions, permissionsOf } from '../../../src/internal/file-permissions.js';
import { tempDirs } from '../../helpers/after-each.js';

const tmp = tempDirs('stn-perms-unit-');

describe('file permissions from the database file', () => {
  it('directories get execute wherever read is set', () => {
    expect(dirModeFor(0o600)).toBe(0o700);
    expect(dirModeFor(0o640)).toBe(0o750);
    expect(dirModeFor(0o644)).toBe(0o755);
    expect(dirModeFor(0o604)).toBe(0o705);
    expect(dirModeFor(0o200)).toBe(0o200);
    expect(dirModeFor(0o4644)).toBe(0o755); // special bits are not copied
  });

  it('created directories and atomically written files take the mode exactly (whatever the umask) and the owner', async () => {
    const d = tmp();
    const db = join(d, 'db');
    writeFileSync(db, '');
    chmodSync(db, 0o660); // group-writable: the umask (022 here) would clear that
    chownSync(db, 4321, 8765); // as root (the tests run as root); elsewhere the chown is skipped
    const perms = permissionsOf(statSync(db));
    await mkdirWithPermissions(join(d, 'a', 'b'), perms);
    await writeFileAtomic(join(d, 'a', 'b', 'c', 'file'), [Buffer.from('x')], { permissions: perms });
    for (const [p, mode] of [
      ['a', 0o770],
      ['a/b', 0o770],
      ['a/b/c', 0o770],
      ['a/b/c/file', 0o660],
    ] as const) {
      const st = statSync(join(d, p));
      expect(`${p} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`).toBe(`${p} ${mode.toString(8)} 4321:8765`);
    }
    expect(statSync(d).uid).toBe(0); // an existing directory is left alone
  });
});
