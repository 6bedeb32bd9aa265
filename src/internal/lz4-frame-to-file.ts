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
 * Memory is fixed: two input and two output slots of the frame's block size (the same 16 MiB the
 * streaming decoder's ring and scratch take), reused for every block; nothing is allocated per block.
 * The output slots are shared memory (the worker decodes into them, this thread hashes them); the input
 * slots are plain buffers handed to the worker and back (transferred, not copied): V8 copies into shared
 * memory with relaxed atomic word copies, 3-4x slower than a plain copy, and filling shared input slots
 * from the read chunks cost this thread 40-100 ms per 200 MB. Frames with linked blocks (never written
 * by Litestream) are decoded on this thread.
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

/** The worker's first message: where it decodes to and writes. */
type WorkerSetup = { outputs: SharedArrayBuffer[]; writeSlice: number; fd: number };
/** `input`: the input slot's memory, transferred to the worker, and back with 'decoded'. */
type ToWorker = { inSlot: number; outSlot: number; length: number; stored: boolean; input: ArrayBuffer };
type FromWorker =
  | { kind: 'decoded'; inSlot: number; outSlot: number; n: number; input: ArrayBuffer }
  | { kind: 'written'; outSlot: number }
  | { kind: 'corrupt'; result: number }
  | { kind: 'write-failed'; message: string; code?: string };

function spawnWorker(): Worker {
  return new Worker(`(${blockWorker.toString()})()`, {
    eval: true,
    workerData: { requireFrom: import.meta.url },
    name: 'stn-replicate lz4 decode',
    // The worker must not inherit a CPU profiler, --inspect, a loader or other flags meant for this thread.
    execArgv: [],
  });
}

/** A worker started ahead of the frame it will decode (prestartDecodeWorker); cleared if it fails or exits first. */
let spare: Worker | undefined;

/**
 * Starts the decode worker ahead of the frame. Starting a worker thread (a V8 isolate, Node's bootstrap,
 * the liblz4 binding) takes ~40 ms on a quiet 2-core machine (50-90 ms on a busy one), and the snapshot's
 * blocks wait for it: a restore starts one while it loads its modules and lists the replica. The next
 * decodeLz4FrameToFile takes it. Until then it keeps no process alive (unref'd). Returns what lets it go
 * if no frame took it: the caller calls that when it is done with decoding (or gives up), whatever happened.
 */
export function prestartDecodeWorker(): () => Promise<void> {
  if (spare) return async () => undefined; // one is waiting already; its starter lets it go
  const mine = spawnWorker();
  mine.unref();
  const died = () => {
    if (spare === mine) spare = undefined;
  };
  mine.on('error', died);
  mine.on('exit', died);
  spare = mine;
  return async () => {
    if (spare !== mine) return;
    spare = undefined;
    await mine.terminate();
  };
}

/** The worker started ahead, or a new one. */
function takeWorker(): Worker {
  const s = spare;
  spare = undefined;
  if (!s) return spawnWorker();
  // Its own listeners replace these now (before any event can be emitted: events come on a later turn).
  s.removeAllListeners('error');
  s.removeAllListeners('exit');
  s.ref();
  return s;
}

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
  // An input slot's view is replaced when its memory comes back from the worker (the transfer detached it).
  const inViews = Array.from({ length: INPUT_SLOTS }, () => Buffer.from(new ArrayBuffer(blockMax)));
  const outputs = Array.from({ length: OUTPUT_SLOTS }, () => new SharedArrayBuffer(blockMax));
  const outViews = outputs.map((b) => Buffer.from(b));
  const freeIn = inViews.map((_, i) => i);
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

  const worker = takeWorker();
  worker.postMessage({ outputs, writeSlice: WRITE_SLICE, fd } satisfies WorkerSetup);
  worker.on('message', (m: FromWorker) => {
    if (m.kind === 'decoded') {
      // In stream order: the worker takes blocks in the order they are sent.
      const out = outViews[m.outSlot]!.subarray(0, m.n);
      hashInSlices(hasher, out);
      if (head.length < headBytes) head = Buffer.concat([head, out.subarray(0, headBytes - head.length)]);
      total += m.n;
      inViews[m.inSlot] = Buffer.from(m.input);
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
        // The next block is read as soon as an input slot is free, while the worker may still be writing
        // the one before: reading waits for a free output slot only to hand the block over.
        await until(() => freeIn.length > 0);
        const inSlot = freeIn.shift()!;
        await readBlockInto(reader, inViews[inSlot]!, length, label);
        await checkBlockChecksum(reader, frame, inViews[inSlot]!.subarray(0, length), label);
        await until(() => freeOut.length > 0);
        const outSlot = freeOut.shift()!;
        pending++;
        const input = inViews[inSlot]!.buffer;
        worker.postMessage({ inSlot, outSlot, length, stored, input } satisfies ToWorker, [input]);
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
 * under the test runner: it must refer to nothing outside itself. Its first message says where to decode
 * to and write (WorkerSetup: it may start before the frame is known). Blocks arrive in stream order; each is
 * decoded from its input slot into its output slot, announced with the input slot's memory handed back
 * (the main thread hashes the output and may refill the input), written at the next position, and
 * announced again (the output slot is free).
 */
function blockWorker(): void {
  // An eval'd worker has `require` on its global object. Read from there, not as a free `require`: a
  // bundler (scripts/bundle-cli.ts) rewrites those to a helper of its own that this text cannot reach.
  const load = (globalThis as unknown as { require: NodeJS.Require }).require;
  const threads = load('node:worker_threads') as typeof import('node:worker_threads');
  const parentPort = threads.parentPort;
  const fs = load('node:fs') as typeof import('node:fs');
  const { createRequire } = load('node:module') as typeof import('node:module');
  const data = threads.workerData as { requireFrom: string };
  const liblz4 = createRequire(data.requireFrom)('lz4/build/Release/lz4.node') as { uncompress(input: Buffer, output: Buffer): number };
  let setup: { outputs: Buffer[]; writeSlice: number; fd: number } | undefined;
  let position = 0;
  let failed = false;
  type Setup = { outputs: SharedArrayBuffer[]; writeSlice: number; fd: number };
  type Block = { inSlot: number; outSlot: number; length: number; stored: boolean; input: ArrayBuffer };
  parentPort!.on('message', (m: Setup | Block) => {
    if (!setup) {
      const first = m as Setup;
      setup = { outputs: first.outputs.map((b) => Buffer.from(b)), writeSlice: first.writeSlice, fd: first.fd };
      return;
    }
    if (failed) return;
    const { outputs, writeSlice, fd } = setup;
    const b = m as Block;
    const input = Buffer.from(b.input, 0, b.length);
    const output = outputs[b.outSlot]!;
    let n: number;
    if (b.stored) {
      output.set(input);
      n = b.length;
    } else {
      n = liblz4.uncompress(input, output);
      if (n < 0) {
        failed = true;
        parentPort!.postMessage({ kind: 'corrupt', result: n });
        return;
      }
    }
    parentPort!.postMessage({ kind: 'decoded', inSlot: b.inSlot, outSlot: b.outSlot, n, input: b.input }, [b.input]);
    try {
      for (let off = 0; off < n;) off += fs.writeSync(fd, output, off, Math.min(writeSlice, n - off), position + off);
    } catch (err) {
      failed = true;
      const e = err as NodeJS.ErrnoException;
      parentPort!.postMessage({ kind: 'write-failed', message: e.message, code: e.code });
      return;
    }
    position += n;
    parentPort!.postMessage({ kind: 'written', outSlot: b.outSlot });
  });
}
