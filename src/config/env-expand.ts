/**
 * Environment expansion of the config text: Go's `os.ExpandEnv` (what Litestream v0.3.13 runs on the
 * whole file before YAML parsing), plus two shell forms Litestream lacks:
 *
 *   $NAME, ${NAME}        the value, or "" when unset (Go)
 *   $*, $#, $$, $@, $!, $?, $-, $0…$9, ${*} …
 *                         one-character special names (Go's isShellSpecialVar); `$$` is the variable
 *                         "$", normally unset, so it becomes "" — there is no escape for a dollar sign
 *   $ followed by anything else (space, ".", "/", end of text)
 *                         kept literally (Go)
 *   ${}                   dropped; an unclosed "${" is dropped and the rest kept (Go)
 *   ${NAME:-default}      the value if set and non-empty, else `default`        (extension)
 *   ${NAME-default}       the value if set (even empty), else `default`         (extension)
 *
 * Go looks `${NAME:-default}` up as a variable literally named "NAME:-default" and so expands it to an
 * empty string, which silently breaks configs such as `region: ${LITESTREAM_S3_REGION:-us-east-1}`.
 * With the extension the default may itself contain `$VAR` / `${VAR}` / nested `${VAR:-x}`, as in a
 * shell. Other shell operators (`:=`, `:+`, `:?`) keep Go's behaviour (looked up whole, so "").
 */

export type Env = Record<string, string | undefined>;

function isSpecial(c: string): boolean {
  return '*#$@!?-0123456789'.includes(c);
}

function isNameChar(c: string | undefined): boolean {
  return c !== undefined && /^[A-Za-z0-9_]$/.test(c);
}

const DEFAULT_FORM = /([A-Za-z_][A-Za-z0-9_]*)(:?-)/y;

export function expandEnv(text: string, env: Env): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const dollar = text.indexOf('$', i);
    if (dollar === -1 || dollar === text.length - 1) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, dollar);
    const next = text[dollar + 1]!;
    if (next === '{') {
      const consumed = expandBraced(text, dollar + 2, env);
      out += consumed.value;
      i = consumed.end;
    } else if (isSpecial(next)) {
      out += env[next] ?? '';
      i = dollar + 2;
    } else if (isNameChar(next)) {
      let j = dollar + 1;
      while (isNameChar(text[j])) j++;
      out += env[text.slice(dollar + 1, j)] ?? '';
      i = j;
    } else {
      out += '$'; // not a name: Go leaves the dollar sign untouched
      i = dollar + 1;
    }
  }
  return out;
}

/** Expands the `${…}` whose content starts at `start`; returns the text and where scanning resumes. */
function expandBraced(text: string, start: number, env: Env): { value: string; end: number } {
  // Go: "${x}" for a single special character x.
  if (start + 1 < text.length && isSpecial(text[start]!) && text[start + 1] === '}') {
    return { value: env[text[start]!] ?? '', end: start + 2 };
  }
  DEFAULT_FORM.lastIndex = start;
  const m = DEFAULT_FORM.exec(text);
  if (m) {
    const close = matchingBrace(text, start);
    if (close !== -1) {
      const name = m[1]!;
      const value = env[name];
      const useValue = m[2] === ':-' ? value !== undefined && value !== '' : value !== undefined;
      const word = text.slice(start + m[0].length, close);
      return { value: useValue ? value! : expandEnv(word, env), end: close + 1 };
    }
  }
  const close = text.indexOf('}', start);
  if (close === -1) return { value: '', end: start }; // Go: bad syntax, eat "${"
  if (close === start) return { value: '', end: close + 1 }; // Go: bad syntax, eat "${}"
  return { value: env[text.slice(start, close)] ?? '', end: close + 1 };
}

/** The `}` closing a `${` whose content starts at `start`, skipping nested `${…}`; -1 if none. */
function matchingBrace(text: string, start: number): number {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === '$' && text[i + 1] === '{') {
      depth++;
      i++;
    } else if (c === '}') {
      if (depth === 0) return i;
      depth--;
    }
  }
  return -1;
}
