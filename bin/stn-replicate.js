#!/usr/bin/env node
// Shim: run the CLI from the compiled output and set the exit code; nothing else.
import { main } from '../dist/src/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
