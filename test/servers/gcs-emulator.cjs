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
 * Plain CommonJS on purpose: it runs with `node` directly, with no TypeScript loader.
 */
'use strict';
const http = require('node:http');
const path = require('node:path');

const lib = path.join(path.dirname(require.resolve('firebase-tools/package.json')), 'lib', 'emulator');
const { StorageEmulator } = require(path.join(lib, 'storage'));
const { createApp } = require(path.join(lib, 'storage', 'server'));
const { CloudStorageObjectMetadata } = require(path.join(lib, 'storage', 'metadata'));
const { EmulatorRegistry } = require(path.join(lib, 'registry'));

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
        if (!handled) app(req, res);
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
