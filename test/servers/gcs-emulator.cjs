/**
 * Google's Cloud Storage emulator (from firebase-tools), run as a child process by gcs-server.ts.
 *
 * `firebase emulators:start` cannot run offline, so this builds only the storage HTTP app, serves it on
 * 127.0.0.1 with an OS-assigned port, registers that port (the app builds upload URLs from the registry)
 * and prints `listening on PORT`. Blobs live under os.tmpdir(); the parent gives us our own TMPDIR.
 *
 * One gap is filled in front of the app: the emulator accepts a resumable upload only as a single PUT of
 * the whole body. Chunked resumable uploads (the Go client above 16 MiB, so Litestream's big snapshots,
 * and the Node SDK with `chunkSize`) send `Content-Range: bytes A-B/*` chunks and expect 308 + `Range`
 * until the last chunk (`bytes A-B/TOTAL`) or an empty `bytes * /TOTAL` finalizes. Those are handled here.
 *
 * Two more gaps are filled for the lease (src/lease/), which needs GCS's generation preconditions:
 * - the emulator ignores `ifGenerationMatch` / `ifGenerationNotMatch` (query or x-goog-if-generation-*
 *   header) on every request. Here they are enforced on single-request uploads (`POST /upload/...?name=`)
 *   and object deletes, checked against the stored generation under a per-object lock that lasts until
 *   the response is sent, so that of concurrent conditional writers exactly one wins; a mismatch is
 *   GCS's 412 conditionNotMet. A conditional resumable upload is refused (501) rather than left
 *   unchecked (nothing here sends one). `GCS_EMULATOR_PRECONDITIONS=off` leaves them ignored, as
 *   shipped: a stand-in for a store that ignores them, which the lease's start-up probe must catch.
 * - its generations are `Date.now()`, so two writes in one millisecond would share one (a
 *   compare-and-swap on the generation could not tell them apart): generations here strictly increase.
 *
 * Plain CommonJS on purpose: it runs with `node` directly, with no TypeScript loader.
 */
'use strict';
const http = require('node:http');
const path = require('node:path');

const lib = path.join(path.dirname(require.resolve('firebase-tools/package.json')), 'lib', 'emulator');
const { StorageEmulator } = require(path.join(lib, 'storage'));
const { createApp } = require(path.join(lib, 'storage', 'server'));
const metadata = require(path.join(lib, 'storage', 'metadata'));
const { CloudStorageObjectMetadata } = metadata;
const { EmulatorRegistry } = require(path.join(lib, 'registry'));

// Strictly increasing generations: the emulator's storage layer reads this export at each write.
let lastGeneration = 0;
const StoredFileMetadata = metadata.StoredFileMetadata;
metadata.StoredFileMetadata = class IncreasingGenerations extends StoredFileMetadata {
  constructor(opts, cloudFunctions, bytes) {
    if (!opts.generation) {
      lastGeneration = Math.max(Date.now(), lastGeneration + 1);
      opts = { ...opts, generation: lastGeneration };
    } else {
      lastGeneration = Math.max(lastGeneration, Number(opts.generation));
    }
    super(opts, cloudFunctions, bytes);
  }
};

const CONDITION_NOT_MET = 'At least one of the pre-conditions you specified did not hold.';

/** The object a conditional request writes or deletes, with its conditions; undefined: none to check. */
function conditionsOf(req) {
  const url = new URL(req.url, 'http://x');
  const header = (name) => (req.headers[name] === undefined ? undefined : String(req.headers[name]));
  const match = url.searchParams.get('ifGenerationMatch') ?? header('x-goog-if-generation-match');
  const notMatch = url.searchParams.get('ifGenerationNotMatch') ?? header('x-goog-if-generation-not-match');
  if (match === undefined && notMatch === undefined) return undefined;
  const conditions = { match: match ?? undefined, notMatch: notMatch ?? undefined };
  let m;
  if (req.method === 'POST' && (m = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname))) {
    const name = url.searchParams.get('name');
    if (url.searchParams.get('uploadType') === 'resumable' || !name)
      return { unsupported: 'a conditional resumable upload, or one without ?name=' };
    return { bucket: decodeURIComponent(m[1]), object: name, ...conditions };
  }
  if (req.method === 'DELETE' && (m = /^\/storage\/v1\/b\/([^/]+)\/o\/(.+)$/.exec(url.pathname))) {
    return { bucket: decodeURIComponent(m[1]), object: decodeURIComponent(m[2]), ...conditions };
  }
  return undefined; // reads, metadata: as the emulator does
}

/** Per-object locks: the tail of each object's queue of conditional requests. */
const locks = new Map();

function withObjectLock(key, fn) {
  const before = locks.get(key) ?? Promise.resolve();
  const run = before.then(fn, fn);
  const tail = run.catch(() => undefined);
  locks.set(key, tail);
  tail.then(() => {
    if (locks.get(key) === tail) locks.delete(key);
  });
  return run;
}

/**
 * Checks a conditional upload or delete against the stored generation, then lets the app handle it;
 * returns false when there is nothing to check.
 */
function conditional(req, res, emulator, app) {
  const c = conditionsOf(req);
  if (!c) return false;
  if (c.unsupported) {
    req.resume();
    res.writeHead(501, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 501, message: `not implemented by the test emulator: ${c.unsupported}` } }));
    return true;
  }
  withObjectLock(`${c.bucket}/${c.object}`, () => {
    const current = String(emulator.adminStorageLayer.getMetadata(c.bucket, c.object)?.generation ?? 0);
    if ((c.match !== undefined && c.match !== current) || (c.notMatch !== undefined && c.notMatch === current)) {
      req.resume();
      res.writeHead(412, { 'Content-Type': 'application/json' });
      const error = {
        message: CONDITION_NOT_MET,
        domain: 'global',
        reason: 'conditionNotMet',
        locationType: 'header',
        location: 'If-Match',
      };
      res.end(JSON.stringify({ error: { code: 412, message: CONDITION_NOT_MET, errors: [error] } }));
      return undefined;
    }
    // Held until the answer is sent: the write is in the store by then.
    return new Promise((resolve) => {
      res.once('close', resolve);
      app(req, res);
    });
  }).catch((err) => {
    if (!res.headersSent) res.writeHead(500);
    res.end(String(err && err.stack ? err.stack : err));
  });
  return true;
}

const RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;
const QUERY = /^bytes \*\/(\d+|\*)$/;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Answers "not finished yet, this much received", in the form the client asked for. */
function incomplete(req, res, size) {
  const headers = size > 0 ? { Range: `bytes=0-${size - 1}` } : {};
  if (String(req.headers['x-guploader-no-308']).toLowerCase() === 'yes') {
    res.writeHead(200, { ...headers, 'X-HTTP-Status-Code-Override': '308' });
  } else {
    res.writeHead(308, headers);
  }
  res.end();
}

async function main() {
  const emulator = new StorageEmulator({ projectId: 'stn-test', host: '127.0.0.1', port: 0, auto_download: false });
  const app = await createApp('stn-test', emulator);
  const uploads = emulator.uploadService;
  const preconditions = process.env.GCS_EMULATOR_PRECONDITIONS !== 'off';

  /** Handles a chunk of a resumable upload, or returns false to let the emulator handle the request. */
  async function chunked(req, res) {
    // The Node SDK sends chunks with PUT, the Go client with POST.
    if (req.method !== 'PUT' && req.method !== 'POST') return false;
    const url = new URL(req.url, 'http://x');
    const uploadId = url.searchParams.get('upload_id');
    const contentRange = req.headers['content-range'];
    if (!url.pathname.startsWith('/upload/storage/v1/b/') || !uploadId || !contentRange) return false;
    const range = RANGE.exec(contentRange);
    const query = QUERY.exec(contentRange);
    if (!range && !query) return false;
    let upload;
    try {
      upload = uploads.getResumableUpload(uploadId);
    } catch {
      res.writeHead(404).end();
      return true;
    }
    const body = await readBody(req);
    const total = (range ? range[3] : query[1]) === '*' ? undefined : Number(range ? range[3] : query[1]);
    if (range) {
      // A resent chunk overlaps what we have: keep only the new tail.
      const start = Number(range[1]);
      if (start > upload.size) {
        res.writeHead(400).end(`chunk starts at ${start} but only ${upload.size} bytes were received`);
        return true;
      }
      const fresh = body.subarray(upload.size - start);
      if (fresh.length > 0) uploads.continueResumableUpload(uploadId, fresh);
    }
    if (total === undefined || upload.size < total) {
      incomplete(req, res, upload.size);
      return true;
    }
    const done = uploads.finalizeResumableUpload(uploadId);
    const metadata = await emulator.adminStorageLayer.uploadObject(done);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(new CloudStorageObjectMetadata(metadata)));
    return true;
  }

  const server = http.createServer((req, res) => {
    if (process.env.GCS_EMULATOR_TRACE) process.stderr.write(`${req.method} ${req.url} ${JSON.stringify(req.headers)}\n`);
    chunked(req, res)
      .then((handled) => {
        if (handled) return;
        if (preconditions && conditional(req, res, emulator, app)) return;
        app(req, res);
      })
      .catch((err) => {
        if (!res.headersSent) res.writeHead(500);
        res.end(String(err && err.stack ? err.stack : err));
      });
  });
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    emulator.args.port = port;
    EmulatorRegistry.set('storage', emulator);
    process.stdout.write(`listening on ${port}\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`gcs emulator failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
