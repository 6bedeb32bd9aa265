/**
 * Environment expansion of the config text, as Go's os.ExpandEnv does it, plus the shell's
 * `${NAME:-default}` and `${NAME-default}` (Litestream expands those to an empty string, which silently
 * breaks configs such as `region: ${LITESTREAM_S3_REGION:-us-east-1}`).
 */

const NAME_START = /[A-Za-z0-9_]/;

/** Go's isShellSpecialVar: one-character names. */
function isShellSpecial(c: string): boolean {
  return '*#$@!?-'.includes(c) || (c >= '0' && c <= '9');
}

export function expandEnv(text: string, env: Record<string, string | undefined>): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c !== '$' || i + 1 >= text.length) {
      out += c;
      i++;
      continue;
    }
    const next = text[i + 1]!;
    if (next === '{') {
      const close = text.indexOf('}', i + 2);
      if (close === -1) {
        // Go: a lone "${" with no closing brace is dropped ("bad syntax" -> empty name).
        out += '';
        i += 2;
        continue;
      }
      out += expandBraced(text.slice(i + 2, close), env);
      i = close + 1;
      continue;
    }
    if (isShellSpecial(next)) {
      out += env[next] ?? '';
      i += 2;
      continue;
    }
    if (!NAME_START.test(next)) {
      // Not a name: Go keeps the "$" and the character as they are.
      out += c;
      i++;
      continue;
    }
    let j = i + 1;
    while (j < text.length && /[A-Za-z0-9_]/.test(text[j]!)) j++;
    out += env[text.slice(i + 1, j)] ?? '';
    i = j;
  }
  return out;
}

function expandBraced(inner: string, env: Record<string, string | undefined>): string {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(:?-)([\s\S]*)$/.exec(inner);
  if (m) {
    const value = env[m[1]!];
    if (m[2] === ':-') return value !== undefined && value !== '' ? value : m[3]!;
    return value !== undefined ? value : m[3]!;
  }
  return env[inner] ?? '';
}
