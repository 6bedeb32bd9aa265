#!/usr/bin/env node
// Shim: catch SIGINT/SIGTERM first (before the CLI's modules load; see src/cli/signal-latch.ts), then
// run the CLI from the compiled output and set the exit code; nothing else.
import { SignalLatch } from '../dist/src/cli/signal-latch.js';

const signals = SignalLatch.install();
const { main } = await import('../dist/src/cli/main.js');
process.exitCode = await main(process.argv.slice(2), { signals });
