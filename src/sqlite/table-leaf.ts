/**
 * Reading one row out of a table b-tree leaf page, as SQLite's file format lays it out (fileformat2,
 * "B-tree Pages" and "Record Format"): enough to read a value back out of a frame of the WAL without
 * opening the database. Only rows whose record fits on the page (no overflow) and integer or NULL
 * columns; anything else is undefined (the caller treats that as "not what was expected").
 */

/** b-tree page type of a table leaf. */
const TABLE_LEAF = 0x0d;

/**
 * The values of the row `rowid` on the leaf page `page` (page number `pgno`: page 1 starts with the
 * 100-byte database header), integers as bigint, NULL as null; undefined when the page is not a table
 * leaf, has no such row, or the row holds anything but integers and NULLs or spills to overflow pages.
 */
export function leafRowIntegers(page: Uint8Array, pgno: number, rowid: bigint): (bigint | null)[] | undefined {
  const at = pgno === 1 ? 100 : 0;
  if (page.length < at + 8 || page[at] !== TABLE_LEAF) return undefined;
  const cells = (page[at + 3]! << 8) | page[at + 4]!;
  for (let i = 0; i < cells; i++) {
    const ptrAt = at + 8 + 2 * i;
    if (ptrAt + 2 > page.length) return undefined;
    let p = (page[ptrAt]! << 8) | page[ptrAt + 1]!;
    const payload = readVarint(page, p);
    if (!payload) return undefined;
    p += payload.length;
    const key = readVarint(page, p);
    if (!key) return undefined;
    p += key.length;
    if (key.value !== rowid) continue;
    // A record that does not fit the page spills to overflow pages (a leaf keeps at most the usable
    // size minus 35 bytes of it; the page size is used here, an upper bound: reserved bytes only lower it).
    if (payload.value > BigInt(page.length - 35) || p + Number(payload.value) > page.length) return undefined;
    return decodeIntegerRecord(page.subarray(p, p + Number(payload.value)));
  }
  return undefined;
}

function decodeIntegerRecord(rec: Uint8Array): (bigint | null)[] | undefined {
  const headerSize = readVarint(rec, 0);
  if (!headerSize || headerSize.value > BigInt(rec.length)) return undefined;
  const end = Number(headerSize.value);
  const types: number[] = [];
  for (let p = headerSize.length; p < end;) {
    const t = readVarint(rec, p);
    if (!t) return undefined;
    types.push(Number(t.value));
    p += t.length;
  }
  const values: (bigint | null)[] = [];
  let body = end;
  for (const t of types) {
    if (t === 0) values.push(null);
    else if (t === 8) values.push(0n);
    else if (t === 9) values.push(1n);
    else if (t >= 1 && t <= 6) {
      const n = [0, 1, 2, 3, 4, 6, 8][t]!;
      if (body + n > rec.length) return undefined;
      let v = 0n;
      for (let k = 0; k < n; k++) v = (v << 8n) | BigInt(rec[body + k]!);
      values.push(BigInt.asIntN(n * 8, v)); // big-endian two's complement
      body += n;
    } else return undefined;
  }
  return values;
}

/** SQLite's varint: 1-9 bytes, big-endian, 7 bits per byte with the high bit set to go on, the ninth byte whole. */
export function readVarint(buf: Uint8Array, at: number): { value: bigint; length: number } | undefined {
  let v = 0n;
  for (let i = 0; i < 9; i++) {
    const b = buf[at + i];
    if (b === undefined) return undefined;
    if (i === 8) return { value: (v << 8n) | BigInt(b), length: 9 };
    v = (v << 7n) | BigInt(b & 0x7f);
    if ((b & 0x80) === 0) return { value: v, length: i + 1 };
  }
  return undefined;
}
