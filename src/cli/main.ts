/** main runs the distkv command with its arguments and resolves to the exit status. */
export async function main(argv: string[]): Promise<number> {
  process.stdout.write(`distkv: no command yet (${argv.join(' ')})\n`)
  return 0
}
