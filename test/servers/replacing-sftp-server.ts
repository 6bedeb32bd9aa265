/**
 * A second, different SFTP server for the tests: the `ssh2` package's server over a local directory,
 * in process on 127.0.0.1, any password accepted. Unlike OpenSSH's sftp-server, its plain rename
 * (SSH_FXP_RENAME) replaces an existing file (rename(2)), as some servers' do, and it offers no
 * extensions (no posix-rename@openssh.com, no fsync@openssh.com): the server the sftp lease must refuse,
 * and on which uploads take their fallback path.
 */
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import ssh2 from 'ssh2';

const { Server, utils } = ssh2;
const { STATUS_CODE, flagsToString } = utils.sftp;

export interface ReplacingSftpServer {
  address: string;
  /** Its public host key line. */
  hostKey: string;
  stop(): Promise<void>;
}

function attrsOf(st: Stats) {
  return {
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    atime: Math.floor(st.atimeMs / 1000),
    mtime: Math.floor(st.mtimeMs / 1000),
  };
}

function statusOf(err: unknown): number {
  const code = (err as { code?: string }).code;
  return code === 'ENOENT'
    ? STATUS_CODE.NO_SUCH_FILE
    : code === 'EACCES' || code === 'EPERM'
      ? STATUS_CODE.PERMISSION_DENIED
      : STATUS_CODE.FAILURE;
}

export async function startReplacingSftpServer(): Promise<ReplacingSftpServer> {
  const keys = utils.generateKeyPairSync('ed25519');
  const server = new Server({ hostKeys: [keys.private] }, (client) => {
    client.on('error', () => undefined);
    client.on('authentication', (ctx) => (ctx.method === 'password' ? ctx.accept() : ctx.reject(['password'])));
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        acceptSession().on('sftp', (acceptSftp) => {
          const sftp = acceptSftp();
          const handles = new Map<number, { fd?: number; names?: string[]; dir?: string }>();
          let next = 0;
          const newHandle = (h: { fd?: number; names?: string[]; dir?: string }) => {
            const buf = Buffer.alloc(4);
            buf.writeUInt32BE(next);
            handles.set(next++, h);
            return buf;
          };
          const get = (b: Buffer) => handles.get(b.readUInt32BE(0));
          // Every request answers once: a result, or the status of the error it threw.
          const on = (event: string, fn: (reqid: number, ...args: never[]) => void) =>
            sftp.on(
              event as 'OPEN',
              ((reqid: number, ...args: never[]) => {
                try {
                  fn(reqid, ...args);
                } catch (err) {
                  sftp.status(reqid, statusOf(err));
                }
              }) as never,
            );
          on('OPEN', (reqid, path: string, flags: number, attrs: { mode?: number }) => {
            sftp.handle(reqid, newHandle({ fd: openSync(path, flagsToString(flags) ?? 'r', attrs.mode ?? 0o644) }));
          });
          on('READ', (reqid, handle: Buffer, offset: number, length: number) => {
            const buf = Buffer.alloc(length);
            const n = readSync(get(handle)!.fd!, buf, 0, length, offset);
            if (n === 0) sftp.status(reqid, STATUS_CODE.EOF);
            else sftp.data(reqid, buf.subarray(0, n));
          });
          on('WRITE', (reqid, handle: Buffer, offset: number, data: Buffer) => {
            writeSync(get(handle)!.fd!, data, 0, data.length, offset);
            sftp.status(reqid, STATUS_CODE.OK);
          });
          on('FSTAT', (reqid, handle: Buffer) => sftp.attrs(reqid, attrsOf(fstatSync(get(handle)!.fd!))));
          on('CLOSE', (reqid, handle: Buffer) => {
            const h = get(handle);
            if (h?.fd !== undefined) closeSync(h.fd);
            handles.delete(handle.readUInt32BE(0));
            sftp.status(reqid, STATUS_CODE.OK);
          });
          on('OPENDIR', (reqid, path: string) => sftp.handle(reqid, newHandle({ names: readdirSync(path), dir: path })));
          on('READDIR', (reqid, handle: Buffer) => {
            const h = get(handle)!;
            const names = h.names ?? [];
            h.names = [];
            if (names.length === 0) return sftp.status(reqid, STATUS_CODE.EOF);
            sftp.name(
              reqid,
              names.map((filename) => ({ filename, longname: filename, attrs: attrsOf(statSync(resolve(h.dir!, filename))) })),
            );
          });
          for (const ev of ['STAT', 'LSTAT']) on(ev, (reqid, path: string) => sftp.attrs(reqid, attrsOf(statSync(path))));
          on('MKDIR', (reqid, path: string, attrs: { mode?: number }) => {
            mkdirSync(path, attrs.mode ?? 0o755);
            sftp.status(reqid, STATUS_CODE.OK);
          });
          on('RMDIR', (reqid, path: string) => {
            rmdirSync(path);
            sftp.status(reqid, STATUS_CODE.OK);
          });
          on('REMOVE', (reqid, path: string) => {
            unlinkSync(path);
            sftp.status(reqid, STATUS_CODE.OK);
          });
          // The point of this server: a rename that replaces what is there.
          on('RENAME', (reqid, from: string, to: string) => {
            renameSync(from, to);
            sftp.status(reqid, STATUS_CODE.OK);
          });
          on('REALPATH', (reqid, path: string) => {
            const p = resolve('/', path);
            sftp.name(reqid, [{ filename: p, longname: p, attrs: {} as never }]);
          });
        });
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    hostKey: keys.public,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}
