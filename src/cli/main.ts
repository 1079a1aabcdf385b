/** main runs the distkv command with its arguments and resolves to the exit status. */
export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'local-server') {
    const { localServerCommand } = await import('../local/command.js')
    return localServerCommand(argv.slice(1))
  }
  process.stdout.write(`distkv: no command yet (${argv.join(' ')})\n`)
  return 0
}
