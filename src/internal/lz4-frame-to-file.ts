/**
 * Decodes one LZ4 frame straight into a file, with the blocks of an independent-block frame (what
 * Litestream writes: 4 MiB blocks) decoded and written on a worker thread while this thread reads the
 * next block and hashes the last one. A restore's snapshot goes through here: on one thread, reading,
 * decoding, hashing and writing 200 MB run one after the other; split this way they take about the time
 * of the slowest.
 *
 * The checks are the streaming decoder's (lz4-frame-format.ts, lz4-frame-decoder.ts), in the same
 * order, with the same errors: header checksum, each block's length and checksum (when the frame has
 * them) before it is decoded, a block that does not decode, the content checksum over the whole decoded
 * stream, the content size, truncation, bytes after the frame. A block is written before the content checksum is known, as the streaming
 * decoder yields it: the caller writes into a temp file that a failure removes.
 *
 * Memory is fixed: two input and two output slots of the frame's block size in shared memory (the same
 * 16 MiB the streaming decoder's ring and scratch take), reused for every block; nothing is allocated
 * per block. Frames with linked blocks (never written by Litestream) are decoded on this thread.
 *
 * The worker writes in 64 KiB pieces: a write creates page-cache folios as large as itself (ext4 with
 * large folios, Linux 6.x), and a later small write into a large dirty folio costs several times more
 * (measured here: the WAL's ~2,600 page writes after a restore's snapshot took 60-90 ms after 4 MiB
 * writes, 15-20 ms after 64 KiB writes). Litestream's copy loop writes 32 KiB at a time.
 */
import { Worker } from 'node:worker_threads';
import { writeSync } from 'node:fs';
import { ByteReader } from './byte-reader.js';
import { decodeBlocks } from './lz4-frame-decoder.js';
import {
  blockDecodeFailure,
  checkBlockChecksum,
  corrupt,
  finishFrame,
  parseBlockHeader,
  readExact,
  readFrameHeader,
} from './lz4-frame-format.js';
import { hashInSlices, newHasher } from './xxh32.js';

export interface DecodeToFileOptions {
  /** What is being decoded, for error messages (e.g. the object key). */
  label?: string;
  /** How many leading decoded bytes to return (a restore checks the SQLite header). Default 100. */
  headBytes?: number;
}

export interface DecodedToFile {
  /** Decoded bytes written (from offset 0). */
  size: number;
  /** The first `headBytes` decoded bytes (fewer if the payload is shorter). */
  head: Buffer;
  /**
   * The block buffers the decoder used (each of the frame's block size; none for linked blocks), free
   * now: a caller that decodes more frames next (a restore's WAL segments) reuses them instead of
   * allocating its own while these wait for the garbage collector.
   */
  buffers: Buffer[];
}

/** Bytes per write call (see the module comment). */
const WRITE_SLICE = 64 * 1024;
const INPUT_SLOTS = 2;
const OUTPUT_SLOTS = 2;

type ToWorker = { inSlot: number; outSlot: number; length: number; stored: boolean };
type FromWorker =
  | { kind: 'decoded'; inSlot: number; outSlot: number; n: number }
  | { kind: 'written'; outSlot: number }
  | { kind: 'corrupt'; result: number }
  | { kind: 'write-failed'; message: string; code?: string };

/**
 * Decodes the LZ4 frame in `source` into the file open at `fd` from offset 0 (the file is written
 * with positioned writes; the caller owns `fd` and keeps it open until this returns, which is after
 * the worker has stopped). Throws CORRUPT_OBJECT as decodeLz4Frame does, or the write's error (with
 * its errno code).
 */
export async function decodeLz4FrameToFile(
  source: AsyncIterable<Uint8Array>,
  fd: number,
  opts: DecodeToFileOptions = {},
): Promise<DecodedToFile> {
  const label = opts.label;
  const headBytes = opts.headBytes ?? 100;
  const reader = new ByteReader(source);
  try {
    const frame = await readFrameHeader(reader, label);
    if (!frame.independent) {
      // Linked blocks decode one after the other whatever the thread; this thread does it.
      let size = 0;
      let head = Buffer.alloc(0);
      for await (const chunk of decodeBlocks(reader, frame, label)) {
        if (head.length < headBytes) head = Buffer.concat([head, chunk.subarray(0, headBytes - head.length)]);
        writeAllSync(fd, chunk, size);
        size += chunk.length;
      }
      return { size, head, buffers: [] };
    }
    return await decodeIndependentBlocks(reader, frame.blockMax, fd, label, headBytes, frame);
  } finally {
    await reader.close();
  }
}

async function decodeIndependentBlocks(
  reader: ByteReader,
  blockMax: number,
  fd: number,
  label: string | undefined,
  headBytes: number,
  frame: Parameters<typeof finishFrame>[1],
): Promise<DecodedToFile> {
  const inputs = Array.from({ length: INPUT_SLOTS }, () => new SharedArrayBuffer(blockMax));
  const outputs = Array.from({ length: OUTPUT_SLOTS }, () => new SharedArrayBuffer(blockMax));
  const inViews = inputs.map((b) => Buffer.from(b));
  const outViews = outputs.map((b) => Buffer.from(b));
  const freeIn = inputs.map((_, i) => i);
  const freeOut = outputs.map((_, i) => i);
  const hasher = await newHasher();
  let total = 0;
  let pending = 0; // blocks sent and not yet written
  let head = Buffer.alloc(0);
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  const worker = new Worker(`(${blockWorker.toString()})()`, {
    eval: true,
    workerData: { inputs, outputs, writeSlice: WRITE_SLICE, fd, requireFrom: import.meta.url },
    name: 'stn-replicate lz4 decode',
    // The worker must not inherit a CPU profiler, --inspect, a loader or other flags meant for this thread.
    execArgv: [],
  });
  worker.on('message', (m: FromWorker) => {
    if (m.kind === 'decoded') {
      // In stream order: the worker takes blocks in the order they are sent.
      const out = outViews[m.outSlot]!.subarray(0, m.n);
      hashInSlices(hasher, out);
      if (head.length < headBytes) head = Buffer.concat([head, out.subarray(0, headBytes - head.length)]);
      total += m.n;
      freeIn.push(m.inSlot);
    } else if (m.kind === 'written') {
      freeOut.push(m.outSlot);
      pending--;
    } else if (m.kind === 'corrupt') {
      failure ??= corrupt(label, blockDecodeFailure(m.result));
    } else {
      failure ??= Object.assign(new Error(m.message), m.code === undefined ? {} : { code: m.code });
    }
    notify();
  });
  worker.on('error', (err) => {
    failure ??= err;
    notify();
  });
  worker.on('exit', () => {
    failure ??= new Error('the lz4 decode worker exited early');
    notify();
  });
  const until = async (ready: () => boolean): Promise<void> => {
    while (!ready() && failure === undefined) await new Promise<void>((resolve) => (wake = resolve));
    if (failure !== undefined) throw failure;
  };

  try {
    try {
      for (;;) {
        const word = (await readExact(reader, 4, label, 'block header')).readUInt32LE(0);
        if (word === 0) break;
        const { length, stored } = parseBlockHeader(word, frame, label);
        await until(() => freeIn.length > 0 && freeOut.length > 0);
        const inSlot = freeIn.shift()!;
        const outSlot = freeOut.shift()!;
        await readBlockInto(reader, inViews[inSlot]!, length, label);
        await checkBlockChecksum(reader, frame, inViews[inSlot]!.subarray(0, length), label);
        pending++;
        worker.postMessage({ inSlot, outSlot, length, stored } satisfies ToWorker);
      }
      await until(() => pending === 0);
    } catch (err) {
      // A block the worker has found corrupt comes first in the stream: report that one, as the
      // streaming decoder would, rather than what reading the blocks after it ran into.
      if (failure === undefined && pending > 0) await until(() => pending === 0).catch(() => undefined);
      throw failure ?? err;
    }
    await finishFrame(reader, frame, hasher.digest(), BigInt(total), label);
    return { size: total, head, buffers: [...outViews, ...inViews] };
  } finally {
    // Never return while the worker may still write to `fd` (the caller closes it, and the number can be
    // reused): terminate() resolves once the thread has stopped, after any write call in progress.
    worker.removeAllListeners('exit');
    await worker.terminate();
  }
}

/**
 * A block's `length` bytes copied into `slot` piece by piece as the source's chunks arrive, each one let
 * go before the next is read: nothing here holds a block's worth of the source's chunks.
 */
async function readBlockInto(reader: ByteReader, slot: Buffer, length: number, label: string | undefined): Promise<void> {
  for (let at = 0; at < length;) {
    const piece = await reader.readUpTo(length - at);
    if (piece.length === 0) throw corrupt(label, 'object is truncated (unexpected end of data in block data)');
    slot.set(piece, at);
    at += piece.length;
  }
}

function writeAllSync(fd: number, chunk: Uint8Array, position: number): void {
  for (let off = 0; off < chunk.length;) off += writeSync(fd, chunk, off, chunk.length - off, position + off);
}

/**
 * The worker thread's code, run from its source text (`eval`), so that the same code runs from dist/ and
 * under the test runner: it must refer to nothing outside itself. Blocks arrive in stream order; each is
 * decoded from its input slot into its output slot, announced (the main thread hashes it and may refill
 * the input slot), written at the next position, and announced again (the output slot is free).
 */
function blockWorker(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const threads = require('node:worker_threads') as typeof import('node:worker_threads');
  const parentPort = threads.parentPort;
  const fs = require('node:fs') as typeof import('node:fs');
  const { createRequire } = require('node:module') as typeof import('node:module');
  const data = threads.workerData as {
    inputs: SharedArrayBuffer[];
    outputs: SharedArrayBuffer[];
    writeSlice: number;
    fd: number;
    requireFrom: string;
  };
  const liblz4 = createRequire(data.requireFrom)('lz4/build/Release/lz4.node') as { uncompress(input: Buffer, output: Buffer): number };
  const inputs = data.inputs.map((b) => Buffer.from(b));
  const outputs = data.outputs.map((b) => Buffer.from(b));
  let position = 0;
  let failed = false;
  parentPort!.on('message', (m: { inSlot: number; outSlot: number; length: number; stored: boolean }) => {
    if (failed) return;
    const input = inputs[m.inSlot]!.subarray(0, m.length);
    const output = outputs[m.outSlot]!;
    let n: number;
    if (m.stored) {
      output.set(input);
      n = m.length;
    } else {
      n = liblz4.uncompress(input, output);
      if (n < 0) {
        failed = true;
        parentPort!.postMessage({ kind: 'corrupt', result: n });
        return;
      }
    }
    parentPort!.postMessage({ kind: 'decoded', inSlot: m.inSlot, outSlot: m.outSlot, n });
    try {
      for (let off = 0; off < n;) off += fs.writeSync(data.fd, output, off, Math.min(data.writeSlice, n - off), position + off);
    } catch (err) {
      failed = true;
      const e = err as NodeJS.ErrnoException;
      parentPort!.postMessage({ kind: 'write-failed', message: e.message, code: e.code });
      return;
    }
    position += n;
    parentPort!.postMessage({ kind: 'written', outSlot: m.outSlot });
  });
}
