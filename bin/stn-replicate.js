#!/usr/bin/env node
// Shim: catch SIGINT/SIGTERM first (before the CLI's modules load; see src/cli/signal-latch.ts), then
// bound V8's young generation, run the CLI from its bundle (dist/src/cli-bundle.js, made by `npm run
// build` from the compiled output; see scripts/bundle-cli.ts; the latch is the bundle's own entry, so
// the CLI shares it) and set the exit code.
import { setFlagsFromString } from 'node:v8';
import { SignalLatch } from '../dist/src/cli-bundle-signal-latch.js';

// V8's young generation starts small and doubles under allocation-heavy streaming (a restore's reads, the
// replicator's copies) to 16-32 MiB, a fifth of the peak RSS, for little GC time saved: keep it at its
// start size. The growth factor is read each time the space would grow, so setting it here, before any
// real work, takes effect (`--max-semi-space-size` is read once at start-up and would not).
setFlagsFromString('--semi-space-growth-factor=1');
const signals = SignalLatch.install();
const { main } = await import('../dist/src/cli-bundle.js');
process.exitCode = await main(process.argv.slice(2), { signals });
