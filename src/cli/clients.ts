/**
 * `distkv clients`: the client registry of a running local server (who is connected, from which
 * process, since when, how many requests), for operators tracking down who holds a database.
 */
import { listClients } from '../local/index.js'
import { positionalCount, targetOptions, type Parsed } from './args.js'
import { ExitCode, targetHelp, type Command, type Io } from './command.js'
import { escapeText, write } from './io.js'
import { targetOf } from './target.js'

/** clientsCommand lists the clients registered with a local server. */
export const clientsCommand: Command = {
  name: 'clients',
  summary: 'list the clients registered with a local server',
  help: `usage: distkv clients (--db DIR | --endpoint HOST:PORT) [--json]

Prints one line per connected client: id, name, pid, transport, connected since (UTC),
requests served. With --db, a directory whose server is not running has no clients (and
no server is started). --json prints the records as one JSON array.

${targetHelp}
  --json                JSON output`,
  options: { ...targetOptions, json: { type: 'boolean' } },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('clients', parsed, 0, 0)
    const clients = await listClients(targetOf('clients', parsed, io.env))
    if (parsed.values.json === true) {
      await write(io.stdout, JSON.stringify(clients) + '\n')
      return ExitCode.ok
    }
    const rows = [['ID', 'NAME', 'PID', 'TRANSPORT', 'SINCE', 'REQUESTS']]
    for (const client of clients) {
      rows.push([client.id, escapeText(Buffer.from(client.name)), String(client.pid), client.transport, new Date(client.since).toISOString(), String(client.requests)])
    }
    const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
    for (const row of rows) await write(io.stdout, row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd() + '\n')
    return ExitCode.ok
  },
}
