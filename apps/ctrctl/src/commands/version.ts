import { arch } from 'node:os';
import { SupervisorService } from '@ctr/api/supervisor/v1/supervisor';
import { API_VERSION, VERSION } from '@ctr/common/version';
import { type Command, formatFlag } from '../command.js';
import { printOne } from '../format.js';

const goArch = (a: string) => ({ x64: 'amd64', arm64: 'arm64', ia32: '386' })[a] ?? a;

export const command: Command = {
  name: 'version',
  usage: 'ctrctl version [OPTIONS]',
  summary: 'Show the ctr version information',
  flags: [formatFlag],
  maxArgs: 0,
  examples: ['ctrctl version', "ctrctl version --format '{{.Server.Version}}'"],
  async run({ flags, globals, out }) {
    const client = {
      Version: VERSION,
      ApiVersion: API_VERSION,
      NodeVersion: process.version,
      Os: 'linux',
      Arch: goArch(arch()),
    };
    const format = flags.format as string | undefined;
    const v = await globals
      .client(SupervisorService, 'ctrd')
      .version({}, { timeoutMs: 5000 })
      .catch((err) => {
        // docker prints the client part before failing on an unreachable daemon.
        if (!format) out.write(clientText(client));
        throw err;
      });
    const server = {
      Version: v.version,
      ApiVersion: v.apiVersion,
      NodeVersion: v.nodeVersion,
      NatsVersion: v.natsVersion,
      Revision: v.revision,
    };
    if (format) {
      printOne(out, format, { Client: client, Server: server });
      return;
    }
    out.write(clientText(client));
    out.write(
      `\nServer:\n Engine:\n  Version:          ${server.Version}\n  API version:      ${server.ApiVersion}\n  Node version:     ${server.NodeVersion}\n` +
        (server.NatsVersion ? ` NATS:\n  Version:          ${server.NatsVersion}\n` : ''),
    );
  },
};

function clientText(c: { Version: string; ApiVersion: string; NodeVersion: string; Os: string; Arch: string }) {
  return `Client:\n Version:           ${c.Version}\n API version:       ${c.ApiVersion}\n Node version:      ${c.NodeVersion}\n OS/Arch:           ${c.Os}/${c.Arch}\n`;
}
