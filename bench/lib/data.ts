/**
 * Synthetic "app data" for the restore benchmark's source database.
 *
 * Restore cost depends on how well the replica compresses (LZ4 decode speed, bytes read), so the rows
 * aim for roughly what a real app stores: JSON-ish documents with repeated keys and a skewed vocabulary
 * plus a random token column (hashes, ciphertext: incompressible); Litestream's LZ4 snapshot of the
 * database comes out at ~45% of its size.
 * Neither all-zero pages (which would flatter both restores) nor pure noise.
 */
import { randomBytes } from 'node:crypto';

export const SCHEMA = `
  CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    doc TEXT NOT NULL,
    token BLOB NOT NULL
  );
  CREATE INDEX events_created ON events (created_at);
`;

/** The one user table; the digest covers every user table anyway. */
export const TABLE = 'events';

export interface Row {
  userId: number;
  createdAt: string;
  doc: string;
  token: Buffer;
}

const KINDS = ['page_view', 'click', 'purchase', 'signup', 'logout', 'search', 'share', 'comment'];
const LETTERS = 'etaoinshrdlucmfwypvbgkjqxz';
const TOKEN_BYTES = 128;

/**
 * Rows of 0.3–1.2 KB: several per 4 KiB page, so pages are mostly full, as in a real table (rows of a
 * few KB would leave a third of each page empty, and zeros compress too well).
 */
export class RowGenerator {
  // xorshift32: Math.random() would do, but this is several times faster for the ~20M draws of a build.
  private s = (Date.now() ^ 0x9e3779b9) >>> 0 || 1;
  private readonly vocab: string[];
  /** Event time in ms: advances with each row, so the created_at index grows at its end as in real apps. */
  private clock = Date.UTC(2024, 0, 1);

  constructor() {
    this.vocab = Array.from({ length: 2000 }, () => {
      let w = '';
      for (let n = 3 + this.int(7); n > 0; n--) w += LETTERS[this.int(26)];
      return w;
    });
  }

  private next(): number {
    let s = this.s;
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    this.s = s >>> 0;
    return this.s;
  }

  /** Uniform in [0, n). */
  int(n: number): number {
    return this.next() % n;
  }

  /** Cubing a uniform draw skews choices towards the first words, like word frequencies in real text. */
  private word(): string {
    const u = (this.next() & 0xffff) / 0x10000;
    return this.vocab[Math.floor(u * u * u * this.vocab.length)]!;
  }

  row(): Row {
    // One randomBytes call per row (token + session ids): per-field calls dominate the build time.
    const rnd = randomBytes(TOKEN_BYTES + 64);
    const target = 200 + this.int(900);
    const events: string[] = [];
    let size = 2;
    for (let e = 0; size < target; e++) {
      const words: string[] = [];
      for (let n = 4 + this.int(12); n > 0; n--) words.push(this.word());
      const session = rnd.toString('hex', TOKEN_BYTES + (e % 8) * 8, TOKEN_BYTES + (e % 8) * 8 + 8);
      const ev = `{"event":"${KINDS[this.int(KINDS.length)]}","ts":${1_700_000_000_000 + this.next()},"session":"${session}","note":"${words.join(' ')}"}`;
      events.push(ev);
      size += ev.length + 1;
    }
    return {
      userId: this.int(50_000),
      createdAt: new Date((this.clock += 1 + this.int(2000))).toISOString(),
      doc: `[${events.join(',')}]`,
      token: rnd.subarray(0, TOKEN_BYTES),
    };
  }
}

/** Approximate bytes a row adds to the database (for sizing the workload, not for accounting). */
export function rowBytes(r: Row): number {
  return r.doc.length + r.token.length + r.createdAt.length + 16;
}
