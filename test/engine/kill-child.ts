// Runs a child script of the power-loss tests with the power-loss model on or off and SIGKILLs it
// (a power cut when the model is on) once its output says enough.
import { spawn } from 'node:child_process'

/** runUntilKilled runs `script args` with DISTKV_FAULT_POWER_LOSS=`fault`, SIGKILLs it once `enough(output)` holds, and returns its stdout. */
export async function runUntilKilled(script: string, args: string[], fault: '0' | '1', enough: (output: string) => boolean): Promise<string> {
  const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, DISTKV_FAULT_POWER_LOSS: fault }, stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  const exited = new Promise((resolve) => child.once('exit', resolve))
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (enough(output)) resolve()
      })
      child.once('exit', (code) => reject(new Error(`child exited (${code}) before it was killed: ${output.slice(-2000)}`)))
    })
  } finally {
    child.kill('SIGKILL')
    await exited
  }
  return output
}
