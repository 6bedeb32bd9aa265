/**
 * Help is not an error: `-h`/`--help` (also `-help`, and per command) print the usage on stdout and exit
 * 0 from the real binary, where Litestream v0.3.13 exits 1 (docs/compatibility.md). No command at all,
 * or an unknown one, is an error: usage or a message on stderr, exit 1.
 */
import { describe, expect, it } from 'vitest';
import { runBin } from '../helpers/cli.js';
import { runLitestream } from '../helpers/oracle.js';

describe('help', () => {
  it.each([
    [['-h'], 'stn-replicate [options] [command]'],
    [['--help'], 'stn-replicate [options] [command]'],
    [['-help'], 'stn-replicate [options] [command]'],
    [['help'], 'stn-replicate [options] [command]'],
    [['restore', '-h'], 'stn-replicate restore [options] [target]'],
    [['replicate', '--help'], 'stn-replicate replicate [options] [db] [replicas...]'],
    [['wal', '-help'], 'stn-replicate wal [options] [target]'],
  ])('%j prints the usage on stdout and exits 0', async (args, usage) => {
    const r = await runBin(args);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(`Usage: ${usage}`);
    expect(r.stderr).toBe('');
  });

  it('no command prints the usage on stderr and exits 1; an unknown command says so', async () => {
    const none = await runBin([]);
    expect(none.code).toBe(1);
    expect(none.stdout).toBe('');
    expect(none.stderr.split('\n')[0]).toBe('Usage: stn-replicate [options] [command]');
    const unknown = await runBin(['bogus']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe("error: unknown command 'bogus'\n(run with -h for usage)\n");
  });

  it('Litestream exits 1 for -h (the difference the docs state)', async () => {
    expect((await runLitestream(['-h'])).code).toBe(1);
    expect((await runLitestream(['restore', '-h'])).code).toBe(1);
  });
});
