/** Output formatting shared by the listing commands. */

/**
 * Aligned columns as Go's tabwriter prints them for Litestream (min width 0, padding 2, spaces): every
 * column but the last is padded to its widest cell plus two spaces. A row whose last cells are empty
 * ends without trailing spaces.
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, col) => Math.max(...all.map((r) => (r[col] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((cell, col) => (col === r.length - 1 ? cell : cell.padEnd(widths[col]! + 2)))
        .join('')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** RFC 3339 in UTC with whole seconds, as Litestream's listings print timestamps. */
export function formatTimestamp(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * RFC 3339 in UTC with milliseconds, as our listings print times: Litestream's whole seconds round a
 * generation's first snapshot down to a time before it, which `restore -timestamp` then refuses.
 */
export function formatTimestampMs(d: Date): string {
  return d.toISOString();
}

/**
 * A duration as Go's time.Duration prints it, after Litestream's rounding for the `lag` column:
 * truncated to 1 s above 10 s, to 100 ms above 1 s, to 1 ms above 1 ms.
 */
export function formatLag(ms: number): string {
  const abs = Math.abs(ms);
  let unit = 0.001; // 1 µs
  if (abs > 10_000) unit = 1000;
  else if (abs > 1000) unit = 100;
  else if (abs > 1) unit = 1;
  const truncated = Math.trunc(ms / unit) * unit;
  return formatGoDuration(truncated);
}

/** Go's Duration.String() for a value in milliseconds (µs precision). */
export function formatGoDuration(ms: number): string {
  let us = Math.round(ms * 1000);
  if (us === 0) return '0s';
  const sign = us < 0 ? '-' : '';
  us = Math.abs(us);
  if (us < 1000) return `${sign}${us}µs`;
  if (us < 1_000_000) return `${sign}${trimFraction(us / 1000)}ms`;
  const h = Math.floor(us / 3_600_000_000);
  const m = Math.floor((us % 3_600_000_000) / 60_000_000);
  const s = (us % 60_000_000) / 1_000_000;
  let out = sign;
  if (h > 0) out += `${h}h`;
  if (h > 0 || m > 0) out += `${m}m`;
  return `${out}${trimFraction(s)}s`;
}

function trimFraction(n: number): string {
  return n.toFixed(6).replace(/\.?0+$/, '');
}
