import { createInterface } from 'node:readline';
import { ImagesService } from '@ctr/api/images/v1/images';
import type { Command } from '../command.js';
import { UsageError } from '../errors.js';

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const c of stream) text += c.toString();
  return text;
}

/** Asks on the terminal; the password is not echoed. */
async function prompt(question: string, secret: boolean): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  if (secret) {
    const write = (rl as unknown as { _writeToOutput(s: string): void })._writeToOutput;
    (rl as unknown as { _writeToOutput(s: string): void })._writeToOutput = (s: string) => {
      if (s.startsWith(question)) write.call(rl, question);
    };
  }
  try {
    return await new Promise((resolve) => rl.question(question, resolve));
  } finally {
    rl.close();
    if (secret) process.stderr.write('\n');
  }
}

export const command: Command = {
  name: 'login',
  usage: 'ctrctl login [OPTIONS] [SERVER]',
  summary: 'Log in to a registry',
  flags: [
    { name: 'username', short: 'u', type: 'string', value: 'string', help: 'Username' },
    { name: 'password', short: 'p', type: 'string', value: 'string', help: 'Password' },
    { name: 'password-stdin', type: 'bool', help: 'Take the password from stdin' },
  ],
  maxArgs: 1,
  examples: ['ctrctl login -u me --password-stdin 127.0.0.1:5000 < pass.txt'],
  async run({ flags, args, globals, out, err }) {
    let username = flags.username as string | undefined;
    let password = flags.password as string | undefined;
    if (flags['password-stdin']) {
      if (password) throw new UsageError('--password and --password-stdin are mutually exclusive', 'login');
      if (!username) throw new UsageError('Must provide --username with --password-stdin', 'login');
      password = (await readAll(process.stdin)).replace(/\r?\n$/, '');
    } else if (password) {
      err.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
    }
    if (!username || password === undefined) {
      if (!process.stdin.isTTY) throw new Error('Cannot perform an interactive login from a non TTY device');
      username ??= await prompt('Username: ', false);
      password ??= await prompt('Password: ', true);
    }
    const r = await globals
      .client(ImagesService, 'image-service')
      .login({ registry: args[0] ?? 'docker.io', username, password });
    out.write(`${r.status}\n`);
  },
};
