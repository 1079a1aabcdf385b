// Summarises V8 .cpuprofile files (from `node --cpu-prof`, e.g. bench/cluster/puts.ts --profile):
// self time by source file and by function, summed over the given profiles, as a share of all
// samples, so the put path's cost can be attributed (engine, wire, raft, msgpack, GC...).
// Usage: node dist/bench/cluster/profile.js FILE.cpuprofile... [--top 40]
import { readFileSync } from 'node:fs'
import { argument } from '../lib/common.js'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
}

interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

/** selfTimes adds each node's self time (µs) of one profile into `byFunction` and `byFile`. */
function selfTimes(profile: Profile, byFunction: Map<string, number>, byFile: Map<string, number>): number {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  let total = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const node = nodes.get(profile.samples[i]!)!
    const delta = profile.timeDeltas[i + 1] ?? 0
    total += delta
    const url = node.callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/') || '(native)'
    const name = `${node.callFrame.functionName || '(anonymous)'} ${url}:${node.callFrame.lineNumber + 1}`
    byFunction.set(name, (byFunction.get(name) ?? 0) + delta)
    byFile.set(url, (byFile.get(url) ?? 0) + delta)
  }
  return total
}

function print(title: string, table: Map<string, number>, total: number, top: number): void {
  console.log(`\n${title}`)
  for (const [name, us] of [...table.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`)
  }
}

function main(): void {
  const top = Number(argument('top', '40'))
  const files = process.argv.slice(2).filter((arg, i, all) => !arg.startsWith('--') && all[i - 1] !== '--top')
  const byFunction = new Map<string, number>()
  const byFile = new Map<string, number>()
  let total = 0
  for (const file of files) total += selfTimes(JSON.parse(readFileSync(file, 'utf8')) as Profile, byFunction, byFile)
  console.log(`${files.length} profiles, ${(total / 1e6).toFixed(1)} s of samples`)
  print('self time by file', byFile, total, top)
  print('self time by function', byFunction, total, top)
}

main()
