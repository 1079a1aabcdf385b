// bench/raft/page-cache: what a large synced log write costs the CPU, buffered (through the page
// cache) against direct (O_DIRECT from page-aligned memory, as src/raftstore/log-files/direct.ts
// writes file chunks), while the written data keeps growing as a log holding values does. It
// writes --files files of 64 MiB in 1 MiB O_DSYNC writes per variant, keeps them until the
// variant ends, and prints the system CPU per MiB and the rate for every 512 MiB written, so a
// cost that appears once the page cache has taken many new pages shows where it starts.
// Usage: npm run build && node dist/bench/raft/page-cache.js [--files 32] [--dir DIR]
import { closeSync, constants as fsConstants, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DIRECT_ALIGN, alignedBuffer } from '../../src/raftstore/log-files/direct.js'
import { argument } from '../lib/common.js'

const MIB = 1024 * 1024
const FILE_MIB = 64
const WINDOW_MIB = 512
const files = Number(argument('files', '32'))
const dir = mkdtempSync(join(argument('dir', tmpdir()), 'distkv-bench-page-cache-'))

/** alignedMiB: one MiB of page-aligned memory (Node's Buffers are not aligned enough for O_DIRECT). */
function alignedMiB(): Buffer {
  return alignedBuffer(MIB).fill(0x5a)
}

function run(variant: 'buffered' | 'direct'): void {
  const data = alignedMiB()
  const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_DSYNC | (variant === 'direct' ? fsConstants.O_DIRECT : 0)
  const paths: string[] = []
  let windowCpu = process.cpuUsage()
  let windowStart = performance.now()
  for (let file = 0; file < files; file++) {
    const path = join(dir, `${variant}-${file}`)
    paths.push(path)
    const fd = openSync(path, flags)
    try {
      for (let i = 0; i < FILE_MIB; i++) writeSync(fd, data, 0, MIB, i * MIB)
    } finally {
      closeSync(fd)
    }
    const written = (file + 1) * FILE_MIB
    if (written % WINDOW_MIB === 0) {
      const cpu = process.cpuUsage(windowCpu)
      const seconds = (performance.now() - windowStart) / 1000
      console.log(`${variant.padEnd(8)} ${String(written - WINDOW_MIB).padStart(6)}-${written} MiB: ${(cpu.system / 1000 / WINDOW_MIB).toFixed(3)} ms system CPU per MiB, ${(WINDOW_MIB / seconds).toFixed(0)} MiB/s`)
      windowCpu = process.cpuUsage()
      windowStart = performance.now()
    }
  }
  for (const path of paths) unlinkSync(path)
}

try {
  console.log(`1 MiB O_DSYNC writes into ${files} files of ${FILE_MIB} MiB per variant in ${dir} (direct: ${DIRECT_ALIGN}-byte aligned)`)
  run('buffered')
  run('direct')
  run('buffered')
} finally {
  rmSync(dir, { recursive: true, force: true })
}
