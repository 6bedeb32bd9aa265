/** Making cloud SDK failures readable: one line per error, and the object named in stream failures. */
import { PassThrough, type Readable } from 'node:stream';

/**
 * One line that says why a cloud request failed, from whatever shape the SDK's error has: the store's
 * error code and HTTP status when there are any, then the message. SDK messages can be multi-line or
 * carry a whole response body (the GCS SDK's "Multiple errors occurred…"); only the useful part stays.
 * Never includes request headers or credentials: only the error's own code, status and message.
 */
export function describeCloudError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as Error & { code?: unknown; errors?: { message?: string; reason?: string }[] };
  const status = httpStatusOf(err);
  const code = typeof e.code === 'string' ? e.code : e.name !== 'Error' && !/Error$/.test(e.name) ? e.name : undefined;
  const inner = (e.errors ?? []).map((x) => x.message ?? x.reason ?? '').filter(Boolean);
  const text = (inner.length > 0 ? inner.join('; ') : e.message)
    .replace(/^Multiple errors occurred during the request\. Please see the `errors` array for complete details\.\s*/, '')
    .replace(/<\?xml[^>]*>/g, '')
    .replace(/\s+/g, ' ')
    .trim();
  const head = [code, status !== undefined ? `HTTP ${status}` : undefined].filter(Boolean).join(', ');
  const clipped = text.length > 300 ? `${text.slice(0, 297)}...` : text;
  return head ? `${clipped} (${head})` : clipped;
}

/**
 * The HTTP status a cloud SDK's error carries, wherever that SDK puts it: `$metadata.httpStatusCode`
 * (AWS), `statusCode` (Azure), a numeric `code` (Google). Undefined for errors without one (a reset,
 * a timeout, a refused connection).
 */
export function httpStatusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { $metadata?: { httpStatusCode?: unknown }; statusCode?: unknown; code?: unknown };
  return [e.$metadata?.httpStatusCode, e.statusCode, e.code].find((v): v is number => typeof v === 'number');
}

/**
 * Passes a response body through, replacing a failure while it streams (a reset, an SDK timeout) with
 * `wrap(err)`, so a restore that fails mid-object still says which object.
 */
export function withErrorContext(body: Readable, wrap: (err: unknown) => Error): Readable {
  const out = new PassThrough();
  body.once('error', (err) => out.destroy(wrap(err)));
  out.once('close', () => {
    if (!body.destroyed) body.destroy();
  });
  body.pipe(out);
  return out;
}
