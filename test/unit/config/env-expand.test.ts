import { describe, expect, it } from 'vitest';
import { expandEnv } from '../../../src/config/index.js';

describe('expandEnv: Go os.Expand cases (os/env_test.go)', () => {
  const goEnv = {
    '*': 'all the args',
    '#': 'NARGS',
    $: 'PID',
    '1': 'ARGUMENT1',
    HOME: '/usr/gopher',
    H: '(Value of H)',
    home_1: '/usr/foo',
    _: 'underscore',
  };
  it.each([
    ['', ''],
    ['$*', 'all the args'],
    ['$$', 'PID'],
    ['${*}', 'all the args'],
    ['$1', 'ARGUMENT1'],
    ['${1}', 'ARGUMENT1'],
    ['now is the time', 'now is the time'],
    ['$HOME', '/usr/gopher'],
    ['$home_1', '/usr/foo'],
    ['${HOME}', '/usr/gopher'],
    ['${H}OME', '(Value of H)OME'],
    ['A$$$#$1$H$home_1*B', 'APIDNARGSARGUMENT1(Value of H)/usr/foo*B'],
    ['start$+middle$^end$', 'start$+middle$^end$'],
    ['mixed$|bag$$$', 'mixed$|bagPID$'],
    ['$', '$'],
    ['$}', '$}'],
    ['${', ''],
    ['${}', ''],
  ])('%j -> %j', (input, out) => expect(expandEnv(input, goEnv)).toBe(out));
});

describe('expandEnv: what Litestream v0.3.13 printed for the same text', () => {
  // Observed with `litestream databases` on db paths holding these forms, A=alpha A_B=ab EMPTY= *=star.
  const env = { A: 'alpha', A_B: 'ab', EMPTY: '', '*': 'star' };
  it.each([
    ['/a-$A-z', '/a-alpha-z'],
    ['/b-${A}-z', '/b-alpha-z'],
    ['/c-$$-z', '/c--z'], // "$$" is the unset variable "$": there is no escape
    ['/d-$1x-z', '/d-x-z'], // one-digit special name
    ['/f-$ -z', '/f-$ -z'], // "$" before a non-name is kept
    ['/g-${}-z', '/g--z'],
    ['/h-${*}-z', '/h-star-z'],
    ['/i-$%-z', '/i-$%-z'],
    ['/k-$A_B-z', '/k-ab-z'],
    ['/l-$-', '/l-'], // "$-" is a special name too
    ['/m-${EMPTY}-z', '/m--z'],
    ['/n-${A', '/n-A'], // unclosed "${" is eaten
    ['/o-$MISSING-z', '/o--z'],
    ['/p-${MISSING}-z', '/p--z'],
  ])('%j -> %j', (input, out) => expect(expandEnv(input, env)).toBe(out));
});

describe('expandEnv: ${NAME:-default} and ${NAME-default} (our extension; Litestream gives "")', () => {
  const env = { A: 'alpha', EMPTY: '', B: 'beta', LITESTREAM_S3_REGION: undefined };
  it.each([
    ['${A:-def}', 'alpha'],
    ['${MISSING:-def}', 'def'],
    ['${EMPTY:-def}', 'def'], // set but empty → default
    ['${A-def}', 'alpha'],
    ['${MISSING-def}', 'def'],
    ['${EMPTY-def}', ''], // set (even empty) → the value
    ['${MISSING:-}', ''],
    ['${MISSING:-http://localhost:9000/x}', 'http://localhost:9000/x'],
    ['${MISSING:-a b c}', 'a b c'],
    ['${MISSING:-$B}', 'beta'], // the default is expanded too
    ['${MISSING:-${B}}', 'beta'],
    ['${MISSING:-${ALSO_MISSING:-deep}}/x', 'deep/x'],
    ['${A:-${B}}', 'alpha'],
    ['${MISSING:-x', 'MISSING:-x'], // unclosed: Go's rule, "${" eaten
    ['${1-x}', ''], // not a name: looked up whole, as Go does
    ['${MISSING:=x}', ''], // other shell operators are not supported (Go's behaviour)
    ['${MISSING:+x}', ''],
  ])('%j -> %j', (input, out) => expect(expandEnv(input, env)).toBe(out));

  it("expands the first user's own config line", () => {
    expect(expandEnv('region: ${LITESTREAM_S3_REGION:-us-east-1}', env)).toBe('region: us-east-1');
    expect(expandEnv('region: ${LITESTREAM_S3_REGION:-us-east-1}', { LITESTREAM_S3_REGION: 'eu-west-3' })).toBe('region: eu-west-3');
  });

  it('works across lines and leaves text without $ alone', () => {
    const text = 'dbs:\n  - path: $DB\n    replicas:\n      - url: s3://${BUCKET:-bkt}/db # $ 5\n';
    expect(expandEnv(text, { DB: '/data/app.db' })).toBe('dbs:\n  - path: /data/app.db\n    replicas:\n      - url: s3://bkt/db # $ 5\n');
    expect(expandEnv('no dollars here', {})).toBe('no dollars here');
  });
});
