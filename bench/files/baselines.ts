/**
 * The two baselines of bench:files, measured in the same run as distkv: the disk's sequential
 * write bandwidth (1 MiB writes, fsync at the end) and etcd (3 members by default) storing the
 * same small files as values (Debian's etcd-server, installed with apt-get when missing).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { Etcd3 } from 'etcd3'
import { freePorts } from '../../test/raftstore/fixtures/processes.js'
import { EtcdCluster, ensureEtcd } from '../cluster/etcd.js'
import { treeCpuMs } from '../lib/common.js'

/** diskWriteMiBps writes `mib` MiB sequentially to a file in `dir`, fsyncs, and returns MiB/s. */
export function diskWriteMiBps(dir: string, mib: number): number {
  const path = join(dir, 'disk-probe.bin')
  const block = randomBytes(1024 * 1024)
  const fd = openSync(path, 'w')
  const started = performance.now()
  try {
    for (let i = 0; i < mib; i++) writeSync(fd, block)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  const seconds = (performance.now() - started) / 1000
  rmSync(path, { force: true })
  return mib / seconds
}

/** findEtcd returns the etcd binary (installed by ensureEtcd when missing), or undefined when it cannot be had. */
export function findEtcd(): string | undefined {
  try {
    return ensureEtcd() || undefined
  } catch (error) {
    console.log(`# etcd: ${(error as Error).message}`)
    return undefined
  }
}

/** EtcdBaseline is a running etcd (one member, or three) on loopback. */
export interface EtcdBaseline {
  client: Etcd3
  /** cpuMs: user + system CPU time (ms) of every member process so far. */
  cpuMs(): number
  stop(): Promise<void>
}

/**
 * startEtcd runs etcd with its data in `dir` and waits until it answers. With `members` 3 it
 * is three member processes (bench/cluster's EtcdCluster), the like-for-like peer of a
 * 3-replica distkv: every put is replicated and fsynced by a majority on this one disk, as a
 * distkv write is. One member replicates nothing (`--etcd-members 1`).
 */
export async function startEtcd(binary: string, dir: string, members: 1 | 3 = 3): Promise<EtcdBaseline> {
  return members === 3 ? startEtcdCluster(binary, dir) : startEtcdMember(binary, dir)
}

async function startEtcdCluster(binary: string, dir: string): Promise<EtcdBaseline> {
  // A port base away from bench/cluster's (28 379) and from distkv dev's defaults.
  const cluster = new EtcdCluster(binary, dir, 29_000 + Math.floor(Math.random() * 500) * 10)
  await cluster.start()
  const client = new Etcd3({ hosts: cluster.hosts })
  return {
    client,
    cpuMs: () => cluster.members.reduce((sum, member) => sum + (member.child?.pid === undefined ? 0 : treeCpuMs(member.child.pid)), 0),
    stop: async () => {
      client.close()
      await cluster.stop()
    },
  }
}

async function startEtcdMember(binary: string, dir: string): Promise<EtcdBaseline> {
  const [clientPort, peerPort] = (await freePorts(2)) as [number, number]
  const child: ChildProcess = spawn(
    binary,
    [
      '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${clientPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-cluster', `default=http://127.0.0.1:${peerPort}`,
      '--quota-backend-bytes', String(8 * 1024 * 1024 * 1024),
      '--log-level', 'error',
    ],
    { stdio: 'ignore' },
  )
  const client = new Etcd3({ hosts: `http://127.0.0.1:${clientPort}` })
  for (let attempt = 0; ; attempt++) {
    try {
      await client.put('probe').value('ok')
      break
    } catch (error) {
      if (attempt > 100) throw error
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  return {
    client,
    cpuMs: () => (child.pid === undefined ? 0 : treeCpuMs(child.pid)),
    stop: async () => {
      client.close()
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    },
  }
}
