/**
 * A real OpenSSH server for the sftp tests: `/usr/sbin/sshd -D -e -f <config>` on 127.0.0.1 with a free
 * port, a config, host key and authorized key of its own in a temp directory, and the machine's own
 * sshd (if any) left alone. Logins are as the `stn-sftp` system user that scripts/install-test-tools.sh
 * creates (as root, as CI runs): by key, or by the random password it stored for root only.
 *
 * sshd runs as root (it must, to log a user in). Each connection runs in a process of its own, in a
 * session of its own (sshd calls setsid), which a SIGTERM to the listener does not end: stop() ends the
 * listener's whole process tree, so no connection outlives the server.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../helpers/free-port.js';

export const SFTP_USER = 'stn-sftp';
const PASSWORD_FILE = '/etc/stn-replicate-test/sftp-password';
const SSHD = '/usr/sbin/sshd';
const SETPRIV = '/usr/bin/setpriv';

export interface SftpServer {
  host: string;
  port: number;
  /** `host:port` as the `host:` config key takes it. */
  address: string;
  user: string;
  /** The user's password (a secret: tests check that it is never printed). */
  password: string;
  /** A private key sshd accepts for the user (OpenSSH format, unencrypted). */
  keyPath: string;
  /** The server's public host key line (`ssh-ed25519 AAAA… comment`), as `host-key:` takes it. */
  hostKey: string;
  /** A known_hosts file that lists this server (`[127.0.0.1]:PORT ssh-ed25519 AAAA…`). */
  knownHostsPath: string;
  /** A new empty directory the user owns (absolute), for one replica. */
  newDir(name?: string): string;
  /** SIGKILLs every connection's processes (the listener stays): what a crash on the server does to a session. */
  killSessions(): number;
  /** The server's log (sshd -e), for failing tests. */
  log(): string;
  stop(): Promise<void>;
}

function userIds(name: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no ${name} user on this machine: run scripts/install-test-tools.sh as root (npm test runs it as pretest)`);
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

function readPassword(): string {
  try {
    return readFileSync(PASSWORD_FILE, 'utf8').trim();
  } catch (err) {
    throw new Error(
      `cannot read ${PASSWORD_FILE} (${(err as Error).message}): run scripts/install-test-tools.sh as root, and the sftp tests as root`,
    );
  }
}

/** The pids of `pid`'s descendants (from /proc), deepest last. */
function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(name)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of parents.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function sshdConfig(dir: string, port: number, penalties: boolean): string {
  return [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${join(dir, 'host_ed25519')}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    `AllowUsers ${SFTP_USER}`,
    'PermitRootLogin no',
    'PubkeyAuthentication yes',
    'PasswordAuthentication yes',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'Subsystem sftp internal-sftp',
    'ForceCommand internal-sftp',
    'AllowTcpForwarding no',
    'X11Forwarding no',
    'PermitTTY no',
    // The tests fail logins on purpose (a wrong password); later OpenSSH releases would then refuse
    // 127.0.0.1 for a while.
    ...(penalties ? ['PerSourcePenalties no'] : []),
    'MaxStartups 100',
    'LogLevel VERBOSE',
    '',
  ].join('\n');
}

export async function startSftpServer(): Promise<SftpServer> {
  const ids = userIds(SFTP_USER);
  const password = readPassword();
  // Readable by the user (sshd reads authorized_keys as the user); the host key stays root's (0600).
  const dir = mkdtempSync(join(tmpdir(), 'stn-sshd-'));
  chmodSync(dir, 0o755);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'stn-test-host', '-f', join(dir, 'host_ed25519')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'stn-test-user', '-f', join(dir, 'user_ed25519')]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_ed25519.pub')), { mode: 0o644 });
  const hostKey = readFileSync(join(dir, 'host_ed25519.pub'), 'utf8').trim();
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege separation directory
  // `PerSourcePenalties` exists from OpenSSH 9.8 on; older ones refuse the unknown keyword.
  const probe = join(dir, 'probe_config');
  writeFileSync(probe, sshdConfig(dir, 22, true));
  let penalties = true;
  try {
    execFileSync(SSHD, ['-t', '-f', probe], { stdio: 'pipe' });
  } catch {
    penalties = false;
  }

  const dataRoot = mkdtempSync(join(tmpdir(), 'stn-sftp-data-'));
  chmodSync(dataRoot, 0o755);
  let dirs = 0;

  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const config = join(dir, 'sshd_config');
    writeFileSync(config, sshdConfig(dir, port, penalties));
    const args = ['-D', '-e', '-f', config];
    // Killed by the kernel if the test process dies (its connections end with their clients).
    const child = existsSync(SETPRIV)
      ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', SSHD, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(SSHD, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const started = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000);
      child.stderr.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.length > 200_000) log = log.slice(-100_000);
        if (/Server listening on 127\.0\.0\.1 port/.test(log)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!started) {
      lastError = new Error(`sshd did not start on port ${port}:\n${log}`);
      await stopTree(child);
      if (/Bind to port|Address already in use/.test(log)) continue;
      break;
    }
    const knownHostsPath = join(dir, 'known_hosts');
    writeFileSync(knownHostsPath, `[127.0.0.1]:${port} ${hostKey}\n`);
    return {
      host: '127.0.0.1',
      port,
      address: `127.0.0.1:${port}`,
      user: SFTP_USER,
      password,
      keyPath: join(dir, 'user_ed25519'),
      hostKey,
      knownHostsPath,
      newDir: (name = 'replica') => {
        const d = join(dataRoot, `${String(++dirs).padStart(3, '0')}-${name}`);
        mkdirSync(d, { mode: 0o755 });
        chownSync(d, ids.uid, ids.gid);
        return d;
      },
      killSessions: () => {
        const pids = descendants(child.pid!);
        for (const p of pids) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        return pids.length;
      },
      log: () => log,
      stop: async () => {
        await stopTree(child);
        rmSync(dir, { recursive: true, force: true });
        rmSync(dataRoot, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  rmSync(dataRoot, { recursive: true, force: true });
  throw lastError ?? new Error('sshd did not start');
}

/** SIGTERM to the listener and every connection process under it; SIGKILL what is left after 5 s. */
async function stopTree(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // The listener is sshd itself, or setpriv's exec of it (same pid).
  const pids = [child.pid!, ...descendants(child.pid!)];
  const exited = new Promise((r) => child.once('exit', r));
  for (const p of pids.reverse()) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const killer = setTimeout(() => {
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }, 5_000);
  await exited;
  clearTimeout(killer);
}
