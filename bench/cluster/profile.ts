// Summarises V8 .cpuprofile files (from `node --cpu-prof`, e.g. bench/cluster/puts.ts --profile):
// self time by source file and by function, and inclusive time of distkv's own functions, summed
// over the given profiles as a share of busy (non-idle) samples, so the put path's cost can be attributed (engine, wire, raft, msgpack, GC...).
// Usage: node dist/bench/cluster/profile.js FILE.cpuprofile... [--top 40]
import { readFileSync } from 'node:fs'
import { argument } from '../lib/common.js'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

function nameOf(node: ProfileNode): { name: string; url: string } {
  const url = node.callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/') || '(native)'
  return { name: `${node.callFrame.functionName || '(anonymous)'} ${url}:${node.callFrame.lineNumber + 1}`, url }
}

/** Tables are the time sums a summary prints. */
interface Tables {
  byFunction: Map<string, number>
  byFile: Map<string, number>
  /** inclusive: time under each distkv function (dist/src), counted once per sample. */
  inclusive: Map<string, number>
}

/** addProfile adds one profile's self and inclusive times (µs) into `tables`; returns its busy time (idle excluded). */
function addProfile(profile: Profile, tables: Tables): number {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const parents = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id)
  let total = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const node = nodes.get(profile.samples[i]!)!
    const delta = profile.timeDeltas[i + 1] ?? 0
    if (node.callFrame.functionName === '(idle)') continue
    total += delta
    const { name, url } = nameOf(node)
    tables.byFunction.set(name, (tables.byFunction.get(name) ?? 0) + delta)
    tables.byFile.set(url, (tables.byFile.get(url) ?? 0) + delta)
    const seen = new Set<string>()
    for (let id: number | undefined = node.id; id !== undefined; id = parents.get(id)) {
      const frame = nameOf(nodes.get(id)!)
      if (!frame.url.startsWith('dist/src') || seen.has(frame.name)) continue
      seen.add(frame.name)
      tables.inclusive.set(frame.name, (tables.inclusive.get(frame.name) ?? 0) + delta)
    }
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
  const tables: Tables = { byFunction: new Map(), byFile: new Map(), inclusive: new Map() }
  let total = 0
  for (const file of files) total += addProfile(JSON.parse(readFileSync(file, 'utf8')) as Profile, tables)
  console.log(`${files.length} profiles, ${(total / 1e6).toFixed(1)} s of busy samples (idle excluded; shares below are of busy time)`)
  print('self time by file', tables.byFile, total, top)
  print('self time by function', tables.byFunction, total, top)
  print('inclusive time of distkv functions', tables.inclusive, total, top)
}

main()
