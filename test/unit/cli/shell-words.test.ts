import { describe, expect, it } from 'vitest';
import { splitShellWords } from '../../../src/cli/shell-words.js';

describe('-exec command splitting (as a POSIX shell splits words)', () => {
  it.each([
    ['node server.js', ['node', 'server.js']],
    ['  node   server.js  --port 8080 ', ['node', 'server.js', '--port', '8080']],
    [`node -e 'console.log("a b")'`, ['node', '-e', 'console.log("a b")']],
    [`echo "it's \\"quoted\\" \\$HOME \\n"`, ['echo', `it's "quoted" $HOME \\n`]],
    [`echo a\\ b c\\'d`, ['echo', 'a b', "c'd"]],
    [`echo '' "" x`, ['echo', '', '', 'x']],
    [`run'with'"joined"parts`, ['runwithjoinedparts']],
    ['', []],
  ])('%j', (line, words) => {
    expect(splitShellWords(line)).toEqual(words);
  });

  it('rejects an unterminated quote, naming the line', () => {
    expect(() => splitShellWords(`node -e 'oops`)).toThrow(`unterminated ' quote in: node -e 'oops`);
    expect(() => splitShellWords('say "hi')).toThrow('unterminated " quote in: say "hi');
  });
});
