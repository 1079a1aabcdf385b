// The etcd 3.4 baseline of bench/cluster: installs Debian's etcd-server when `etcd` is missing,
// runs a 3-member cluster on loopback (one process per member, data in a temp dir), finds its
// leader and kills/restarts members for the failover figure.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { Etcd3 } from 'etcd3'

/** ensureEtcd installs etcd-server with apt-get if the etcd binary is not on PATH. */
export function ensureEtcd(): string {
  const found = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' }).stdout.trim()
  if (found !== '') return found
  process.stderr.write('bench: installing etcd-server (apt-get)...\n')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  spawnSync('apt-get', ['update'], { stdio: 'ignore', env })
  const install = spawnSync('apt-get', ['install', '-y', 'etcd-server'], { stdio: 'inherit', env })
  if (install.status !== 0) throw new Error('apt-get install -y etcd-server failed (run as root?)')
  return spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' }).stdout.trim()
}

/** EtcdMember is one member process. */
export interface EtcdMember {
  name: string
  client: string
  peer: string
  dataDir: string
  child: ChildProcess | undefined
}

/** EtcdCluster is a 3-member etcd on loopback. */
export class EtcdCluster {
  readonly members: EtcdMember[]

  constructor(private readonly binary: string, dir: string, basePort: number) {
    this.members = [0, 1, 2].map((i) => ({
      name: `e${i + 1}`,
      client: `http://127.0.0.1:${basePort + 2 * i}`,
      peer: `http://127.0.0.1:${basePort + 2 * i + 1}`,
      dataDir: join(dir, `etcd-${i + 1}`),
      child: undefined,
    }))
    for (const m of this.members) mkdirSync(m.dataDir, { recursive: true })
  }

  /** hosts are the client URLs. */
  get hosts(): string[] {
    return this.members.map((m) => m.client)
  }

  /** start launches every member and waits until a put succeeds. */
  async start(): Promise<void> {
    for (const member of this.members) this.launch(member)
    const client = new Etcd3({ hosts: this.hosts })
    try {
      for (let i = 0; ; i++) {
        try {
          await client.put('bench/probe').value('1')
          return
        } catch (error) {
          if (i > 300) throw error
          await new Promise((r) => setTimeout(r, 100))
        }
      }
    } finally {
      client.close()
    }
  }

  /** launch starts one member (new cluster on first start, its existing data on a restart). */
  launch(member: EtcdMember): void {
    const initial = this.members.map((m) => `${m.name}=${m.peer}`).join(',')
    member.child = spawn(this.binary, [
      '--name', member.name, '--data-dir', member.dataDir,
      '--listen-client-urls', member.client, '--advertise-client-urls', member.client,
      '--listen-peer-urls', member.peer, '--initial-advertise-peer-urls', member.peer,
      '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', 'distkv-bench',
      '--log-level', 'error',
    ], { stdio: 'ignore' })
  }

  /** leader finds the member the cluster currently follows. */
  async leader(): Promise<EtcdMember> {
    for (const member of this.members) {
      if (member.child === undefined) continue
      const client = new Etcd3({ hosts: [member.client] })
      try {
        const status = await client.maintenance.status()
        if (status.header.member_id === status.leader) return member
      } catch {
        // try the next member
      } finally {
        client.close()
      }
    }
    throw new Error('etcd has no leader')
  }

  /** kill9 kills a member with SIGKILL. */
  async kill9(member: EtcdMember): Promise<void> {
    const child = member.child
    member.child = undefined
    if (child === undefined || child.exitCode !== null) return
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGKILL')
    await exited
  }

  /** stop kills every member. */
  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => this.kill9(m)))
  }
}
