/**
 * A module the files benchmark preloads into every server process (`NODE_OPTIONS=--import
 * ...`) when given `--cpu-prof DIR`, because Node refuses `--cpu-prof` in NODE_OPTIONS and
 * `distkv dev` starts its node processes itself. It samples the process's CPU from load to
 * exit and writes DIR/files-PID.cpuprofile (the format of `node --cpu-prof`; summarise with
 * bench/cluster/profile.js). A process killed by SIGKILL writes nothing.
 */
import { Session } from 'node:inspector'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.env.DISTKV_BENCH_PROFILE_DIR
if (dir !== undefined && dir !== '') {
  const session = new Session()
  session.connect()
  session.post('Profiler.setSamplingInterval', { interval: 1000 })
  session.post('Profiler.enable')
  session.post('Profiler.start')
  // On the main thread an inspector session answers synchronously, so this works in 'exit'.
  process.once('exit', () => {
    session.post('Profiler.stop', (error, result) => {
      if (error === null) writeFileSync(join(dir, `files-${process.pid}.cpuprofile`), JSON.stringify(result.profile))
    })
  })
}
