import { describe, expect, it } from 'vitest';
import { absolutePath, cleanPath, expandHome, isUrl, parseReplicaUrl, parseS3Host, redactUrl } from '../../../src/config/index.js';
import { isReplicateError } from '../../../src/errors.js';

const CWD = '/work/app';
const HOME = '/home/me';
const parse = (url: string) => parseReplicaUrl(url, CWD, HOME);

describe('isUrl (Litestream ^\\w+://)', () => {
  it.each([
    ['s3://bucket/db', true],
    ['file:///tmp/x', true],
    ['my_s3://x', true],
    ['/tmp/db.sqlite', false],
    ['file:relative/z', false],
    ['C:\\db', false],
    ['./s3://x', false],
  ])('%s -> %s', (s, yes) => expect(isUrl(s)).toBe(yes));
});

describe('parseReplicaUrl: spec §2.2 examples', () => {
  it.each([
    ['s3://b', { type: 's3', host: 'b', path: '.' }],
    ['s3://b/', { type: 's3', host: 'b', path: '' }],
    ['s3://b//a/../x', { type: 's3', host: 'b', path: 'x' }],
    ['s3://my.bucket.com:9000/x/y/', { type: 's3', host: 'my.bucket.com:9000', path: 'x/y' }],
    ['s3://mybkt.s3.us-west-000.backblazeb2.com/db', { type: 's3', host: 'mybkt.s3.us-west-000.backblazeb2.com', path: 'db' }],
    // Litestream v0.3.13 ignores a query; we return it, decoded, and replica-resolve.ts applies or refuses it.
    ['s3://bkt/db?endpoint=http://x', { type: 's3', host: 'bkt', path: 'db', query: [['endpoint', 'http://x']] }],
    ['s3://bkt/db#frag', { type: 's3', host: 'bkt', path: 'db' }],
    ['s3://bkt/a%20b', { type: 's3', host: 'bkt', path: 'a b' }], // cloud paths are decoded
    ['S3://bkt/db', { type: 's3', host: 'bkt', path: 'db' }], // Go lower-cases the scheme
    ['gcs://bkt/station-db', { type: 'gcs', host: 'bkt', path: 'station-db' }],
    ['ftp://host/x', { type: 'ftp', host: 'host', path: 'x' }], // unknown schemes are for the caller to reject
  ])('%s', (url, expected) => expect(parse(url)).toEqual(expected));

  it('abs: container is the host, account the user (spec §2.6)', () => {
    expect(parse('abs://acct@container/path/db')).toEqual({ type: 'abs', host: 'container', path: 'path/db', user: 'acct' });
    expect(parse('abs://container/path/db')).toEqual({ type: 'abs', host: 'container', path: 'path/db' });
  });

  it('sftp: user, password, host:port; the path as is (spec §2.7)', () => {
    expect(parse('sftp://me:p%40ss@example.com:2222/data//db/../x')).toEqual({
      type: 'sftp',
      host: 'example.com:2222',
      path: '/data//db/../x',
      user: 'me',
      password: 'p@ss',
    });
    expect(parse('sftp://me@host')).toEqual({ type: 'sftp', host: 'host', path: '', user: 'me' });
  });
});

describe('parseReplicaUrl: file URLs (each checked against litestream v0.3.13)', () => {
  it.each([
    ['file:///tmp/x', '/tmp/x'],
    ['file://tmp/y', '/tmp/y'], // the host becomes a path component
    ['file:/tmp/z', '/tmp/z'],
    ['file:relative/z', '/work/app/relative/z'], // rootless: relative to the working directory
    ['file:~/backups', '/home/me/backups'],
    ['file:///tmp/a/../b/./c/', '/tmp/b/c'],
    ['FILE:///tmp/x', '/tmp/x'],
    ['file:///tmp/my%20dir', '/tmp/my%20dir'], // percent-encoding is kept as written
    ['file:///tmp/sp ace', '/tmp/sp%20ace'], // and a path that is not validly encoded is escaped
    ['file:///tmp/café', '/tmp/caf%C3%A9'],
    ['file:///tmp/q?q=1', '/tmp/q?q=1'], // the query and fragment stay part of the path
    ['file:///tmp/fr#ag', '/tmp/fr#ag'],
    ['file://', ''], // names no path (Litestream would use the working directory)
  ])('%s -> %s', (url, path) => expect(parse(url)).toEqual({ type: 'file', host: '', path }));
});

describe('parseReplicaUrl: errors', () => {
  it.each([
    ['s3://b:abc/x', 'invalid replica URL s3://b:abc/x: invalid port ":abc" after host'],
    ['file:///tmp/%zz', 'invalid replica URL file:///tmp/%zz: invalid URL escape "%zz"'],
    ['/tmp/x', 'invalid replica URL /tmp/x: replica url scheme required'],
    ['s3://b c/x', 'invalid replica URL s3://b c/x: invalid character " " in host name'],
    ['my_s3://x', 'invalid replica URL my_s3://x: first path segment in URL cannot contain colon'],
    ['sftp://me:secret@h:x/p', 'invalid replica URL sftp://me:xxxxx@h:x/p: invalid port ":x" after host'],
  ])('%s', (url, message) => {
    let err: unknown;
    try {
      parse(url);
    } catch (e) {
      err = e;
    }
    expect(isReplicateError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toBe(message);
  });
});

describe('parseS3Host (Litestream s3.ParseHost, spec §2.4)', () => {
  it.each([
    ['mybucket', { bucket: 'mybucket', forcePathStyle: false }],
    ['my.bucket.com:9000', { bucket: 'my.bucket.com', forcePathStyle: false }], // port dropped
    ['localhost:9000', { region: 'us-east-1', endpoint: 'http://localhost:9000', forcePathStyle: true }], // no bucket
    ['bkt.localhost:9000', { bucket: 'bkt', region: 'us-east-1', endpoint: 'http://localhost:9000', forcePathStyle: true }],
    ['bkt.localhost', { bucket: 'bkt', region: 'us-east-1', endpoint: 'http://localhost', forcePathStyle: true }],
    [
      'mybkt.s3.us-west-000.backblazeb2.com',
      { bucket: 'mybkt', region: 'us-west-000', endpoint: 'https://s3.us-west-000.backblazeb2.com', forcePathStyle: true },
    ],
    ['bkt.s3.filebase.com', { bucket: 'bkt', endpoint: 'https://s3.filebase.com', forcePathStyle: true }],
    ['bkt.s3xfilebase.com', { bucket: 'bkt', endpoint: 'https://s3.filebase.com', forcePathStyle: true }], // Litestream's unescaped dot
    [
      'bkt.nyc3.digitaloceanspaces.com',
      { bucket: 'bkt', region: 'nyc3', endpoint: 'https://nyc3.digitaloceanspaces.com', forcePathStyle: true },
    ],
    ['bkt.s3.fr-par.scw.cloud', { bucket: 'bkt', region: 'fr-par', endpoint: 'https://s3.fr-par.scw.cloud', forcePathStyle: true }],
    [
      'bkt.us-east-1.linodeobjects.com:443',
      { bucket: 'bkt', region: 'us-east-1', endpoint: 'https://us-east-1.linodeobjects.com:443', forcePathStyle: true },
    ],
    ['a.b.c.s3.amazonaws.com', { bucket: 'a.b.c.s3.amazonaws.com', forcePathStyle: false }],
  ])('%s', (host, expected) => expect(parseS3Host(host)).toEqual(expected));
});

describe('paths', () => {
  // Go's path.Clean test table.
  it.each([
    ['', '.'],
    ['abc', 'abc'],
    ['abc/def', 'abc/def'],
    ['.', '.'],
    ['..', '..'],
    ['../..', '../..'],
    ['../../abc', '../../abc'],
    ['/abc', '/abc'],
    ['/', '/'],
    ['abc/', 'abc'],
    ['./', '.'],
    ['../', '..'],
    ['/abc/', '/abc'],
    ['abc//def//ghi', 'abc/def/ghi'],
    ['//abc', '/abc'],
    ['///abc', '/abc'],
    ['//abc//', '/abc'],
    ['abc/./def', 'abc/def'],
    ['/./abc/def', '/abc/def'],
    ['abc/.', 'abc'],
    ['abc/def/ghi/../jkl', 'abc/def/jkl'],
    ['abc/def/../ghi/../jkl', 'abc/jkl'],
    ['abc/def/..', 'abc'],
    ['abc/def/../..', '.'],
    ['/abc/def/../..', '/'],
    ['abc/def/../../..', '..'],
    ['/abc/def/../../..', '/'],
    ['abc/def/../../../ghi/jkl/../../../mno', '../../mno'],
    ['abc/./../def', 'def'],
    ['abc//./../def', 'def'],
    ['abc/../../././../def', '../../def'],
  ])('cleanPath(%j) = %j', (p, out) => expect(cleanPath(p)).toBe(out));

  it('expands ~ and ~/ only, and makes paths absolute against cwd', () => {
    expect(expandHome('~', HOME)).toBe(HOME);
    expect(expandHome('~/db.sqlite', HOME)).toBe('/home/me/db.sqlite');
    expect(expandHome('~other/db', HOME)).toBe('~other/db');
    expect(absolutePath('data/../db.sqlite', CWD, HOME)).toBe('/work/app/db.sqlite');
    expect(absolutePath('/data//x/', CWD, HOME)).toBe('/data/x');
    expect(absolutePath('~/x', CWD, HOME)).toBe('/home/me/x');
    expect(() => expandHome('~/x', '')).toThrow('expanding path ~/x: no home directory available');
  });

  it('redacts passwords in URLs for messages', () => {
    expect(redactUrl('sftp://me:secret@host/p')).toBe('sftp://me:xxxxx@host/p');
    expect(redactUrl('sftp://me@host/p')).toBe('sftp://me@host/p');
    expect(redactUrl('s3://bucket/p')).toBe('s3://bucket/p');
  });
});
