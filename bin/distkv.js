#!/usr/bin/env node
// The distkv command: a thin launcher for the compiled CLI (built by `npm install`).
import { main } from '../dist/src/cli/main.js'

main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code },
  (error) => {
    process.stderr.write(`distkv: ${error?.message ?? error}\n`)
    process.exitCode = 2
  },
)
