/**
 * age keys as Litestream v0.3.13 reads them from `age: { identities: [...], recipients: [...] }`, without
 * the age library (so that loading a config does not load it): each list entry is the body of a key
 * file — one key per line, blank lines and lines starting with `#` skipped, a trailing CR dropped, no
 * other trimming (Go's `age.ParseIdentities`/`ParseRecipients` over a `bufio.Scanner`). Only X25519
 * keys: `AGE-SECRET-KEY-1…` identities and `age1…` recipients, the only kind v0.3.13 (age v1.1.1) parses.
 *
 * Secrets: no message here ever contains a key or any part of one.
 */

/** The first bytes of every age v1 file (its version line), which no LZ4 frame starts with. */
export const AGE_INTRO = Buffer.from('age-encryption.org/');

/** Whether `head` (the first bytes of an object, possibly fewer than AGE_INTRO) begins an age file. */
export function startsLikeAge(head: Uint8Array): boolean {
  const n = Math.min(head.length, AGE_INTRO.length);
  return n === AGE_INTRO.length && AGE_INTRO.equals(head.subarray(0, n));
}

/** One key of an entry, with its 1-based line number in that entry (for messages). */
export interface KeyLine {
  line: number;
  key: string;
}

/** The keys in one list entry, as Go's line scanner yields them. */
export function keyLines(entry: string): KeyLine[] {
  const out: KeyLine[] = [];
  entry.split('\n').forEach((raw, i) => {
    const key = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (key === '' || key.startsWith('#')) return;
    out.push({ line: i + 1, key });
  });
  return out;
}

// Bech32's alphabet; an X25519 key is 32 bytes: 52 data characters and a 6-character checksum.
const BECH32 = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const IDENTITY_RE = new RegExp(`^AGE-SECRET-KEY-1[${BECH32.toUpperCase()}]{58}$`);
const RECIPIENT_RE = new RegExp(`^age1[${BECH32}]{58}$`);

export type AgeKeyKind = 'identity' | 'recipient';

/**
 * What is wrong with `key` as an X25519 identity or recipient judged by its form (prefix, alphabet,
 * length), or undefined when the form is right. Whether its checksum holds is for the age library
 * (age-stream.ts). The answer names the kind of mistake, never the key.
 */
export function keyShapeProblem(kind: AgeKeyKind, key: string): string | undefined {
  if (kind === 'identity' ? IDENTITY_RE.test(key) : RECIPIENT_RE.test(key)) return undefined;
  if (key !== key.trim()) return 'it has spaces or tabs around it (Litestream does not trim keys either)';
  const upper = key.toUpperCase();
  if (upper.startsWith('AGE-SECRET-KEY-PQ-1') || key.startsWith('age1pq1') || key.startsWith('age1tag')) {
    return 'post-quantum and tag keys are not supported: Litestream v0.3.13 reads X25519 age keys only (age-keygen without -pq)';
  }
  if (/^(ssh-|ecdsa-sha2-|-----BEGIN)/.test(key)) return 'SSH keys are not supported: Litestream v0.3.13 reads X25519 age keys only';
  if (kind === 'identity') {
    if (key.startsWith('age1'))
      return 'this is a recipient (a public key, age1…): it belongs under age.recipients; identities are secret keys (AGE-SECRET-KEY-1…)';
    if (upper.startsWith('AGE-SECRET-KEY-1') && key !== upper) return 'an age secret key is written in upper case (AGE-SECRET-KEY-1…)';
    return 'not an age X25519 secret key (want AGE-SECRET-KEY-1 and 58 more characters, as age-keygen writes it)';
  }
  if (upper.startsWith('AGE-SECRET-KEY-')) {
    return 'this is a secret key (an identity): it belongs under age.identities; recipients are public keys (age1…, `age-keygen -y` prints them)';
  }
  if (key.startsWith('AGE1')) return 'an age recipient is written in lower case (age1…)';
  return 'not an age X25519 recipient (want age1 and 58 more characters, as `age-keygen -y` prints it)';
}

/** An entry that holds no key at all (Litestream: "no secret keys found" / "no recipients found"). */
export function emptyEntryProblem(kind: AgeKeyKind): string {
  return kind === 'identity' ? 'holds no secret key (only blank or # lines)' : 'holds no recipient (only blank or # lines)';
}

/**
 * Every problem of form in a list of entries, as `"<list>[i]: <problem>"` (`"<list>[i] line n: …"` for
 * an entry of several lines); empty when all are well formed. `list` names the list in messages (e.g. "age.identities").
 */
export function listShapeProblems(kind: AgeKeyKind, list: string, entries: readonly string[]): string[] {
  const problems: string[] = [];
  entries.forEach((entry, i) => {
    const lines = keyLines(entry);
    if (lines.length === 0) problems.push(`${list}[${i}]: ${emptyEntryProblem(kind)}`);
    for (const { line, key } of lines) {
      const p = keyShapeProblem(kind, key);
      if (p !== undefined) problems.push(`${list}[${i}]${entry.includes('\n') ? ` line ${line}` : ''}: ${p}`);
    }
  });
  return problems;
}
