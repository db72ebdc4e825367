#!/usr/bin/env node
// Thin launcher: the CLI is TypeScript run directly by Node 24 (type stripping).
import { main } from '../src/cli/main.ts';

main(process.argv.slice(2)).then((code) => { if (code !== 0) process.exit(code); });
