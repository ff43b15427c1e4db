/**
 * docker cp: a tar stream between this host and a container, with docker's
 * naming rules (a destination directory receives the source under its own
 * name; a missing destination becomes the source renamed; `SRC/.` copies a
 * directory's contents). The container side resolves every path inside the
 * container; this side extracts with the same confined extractor the
 * snapshotter uses, so a tar from a hostile container cannot write outside
 * the destination.
 */
import { lstatSync, realpathSync, type Stats, statSync } from 'node:fs';
import { basename, dirname, posix, resolve } from 'node:path';
import { ContainersService, type PathStat } from '@ctr/api/containers/v1/containers';
import { isNotFound } from '@ctr/common/errors';
import { readStream } from '@ctr/common/grpc-client';
import { AT, closeFd, O, openat2 } from '@ctr/sys';
import { type TarEntry, type TarHandler, TarReader } from '@ctr/tar';
import { Extractor, LayerError } from '@ctr/tar/extract';
import { pathTar } from '@ctr/tar/tree';
import type { Command } from '../command.js';
import type { Globals } from '../engine.js';
import { humanSize } from '../format.js';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

/** `CONTAINER:PATH`, or undefined for a local path (absolute or relative ones starting with . never name a container). */
export function splitCpArg(arg: string): { container: string; path: string } | undefined {
  if (arg.startsWith('/') || arg.startsWith('.')) return undefined;
  const i = arg.indexOf(':');
  if (i <= 0) return undefined;
  return { container: arg.slice(0, i), path: arg.slice(i + 1) };
}

/** `dir/.`: the directory's contents, not the directory. */
const contentsOf = (p: string) => p === '.' || p.endsWith('/.');

class CpError extends Error {}

/** Sets every entry's owner (cp without -a: the copies belong to whoever copies). */
class Owned implements TarHandler {
  constructor(
    private readonly inner: TarHandler,
    private readonly owner?: { uid: number; gid: number },
  ) {}
  entry(e: TarEntry): void {
    this.inner.entry(this.owner ? { ...e, ...this.owner } : e);
  }
  data(chunk: Buffer): void {
    this.inner.data(chunk);
  }
  end(): void {
    this.inner.end();
  }
}

const containers = (globals: Globals) => globals.client(ContainersService, 'container-service');
type Api = ReturnType<typeof containers>;

/** A path's stat in the container, or undefined when it does not exist. */
async function statIn(api: Api, ref: string, path: string, follow: boolean): Promise<PathStat | undefined> {
  try {
    return await api.statPath({ ref, path, followLink: follow });
  } catch (err) {
    if (isNotFound(err) && /^Could not find the file/.test((err as Error).message)) return undefined;
    throw err;
  }
}

const isDir = (mode: number) => (mode & S_IFMT) === S_IFDIR;

function localStat(path: string, follow: boolean): Stats | undefined {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch {
    return undefined;
  }
}

interface CpOptions {
  follow: boolean;
  archive: boolean;
  quiet: boolean;
}

/**
 * docker's naming rules, the same both ways: where the tar is extracted and
 * what its top entry is called ('' writes a directory's contents only).
 */
function destination(
  srcPath: string,
  srcIsDir: boolean,
  srcName: string,
  destPath: string,
  dest: { isDir: boolean } | undefined,
  path: { dirname(p: string): string; basename(p: string): string },
): { into: string; as: string } {
  if (contentsOf(srcPath) && !srcIsDir) throw new CpError(`source path ${srcPath} is not a directory`);
  if (dest?.isDir) return { into: destPath, as: contentsOf(srcPath) ? '' : srcName };
  if (dest && srcIsDir) throw new CpError(`cannot copy a directory to a file: ${destPath}`);
  if (!dest && !srcIsDir && destPath.endsWith('/'))
    throw new CpError(`destination directory ${destPath} does not exist`);
  return { into: path.dirname(destPath), as: path.basename(destPath) };
}

async function copyFromContainer(
  globals: Globals,
  src: { container: string; path: string },
  dest: string,
  o: CpOptions,
  err: NodeJS.WriteStream,
  out: NodeJS.WriteStream,
): Promise<void> {
  const api = containers(globals);
  const st = await api.statPath({ ref: src.container, path: src.path, followLink: o.follow });
  const stream = (as: string) =>
    readStream(api.copyOut({ ref: src.container, path: src.path, as, followLink: o.follow }));
  if (dest === '-') {
    for await (const c of stream('')) if (!out.write(c.data)) await new Promise((r) => out.once('drain', r));
    return;
  }
  const d = localStat(dest, true);
  const { into, as } = destination(
    src.path,
    isDir(st.mode),
    st.name === '/' ? '' : st.name,
    dest,
    d && { isDir: d.isDirectory() },
    { dirname: (p) => dirname(resolve(p)), basename: (p) => basename(resolve(p)) },
  );
  if (!localStat(into, true)?.isDirectory()) throw new CpError(`destination directory ${into} does not exist`);
  const ex = new Extractor(into, [], 'archive entry');
  const owner = o.archive ? undefined : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const reader = new TarReader(new Owned(ex, owner));
  let size = 0;
  try {
    for await (const c of stream(as || '.')) {
      size += c.data.length;
      reader.write(Buffer.from(c.data));
    }
    reader.end();
    ex.finish();
  } catch (e) {
    ex.close();
    if (e instanceof LayerError) throw new CpError(e.message);
    throw e;
  }
  if (!o.quiet) err.write(`Successfully copied ${humanSize(size)} to ${dest}\n`);
}

async function copyToContainer(
  globals: Globals,
  src: string,
  dest: { container: string; path: string },
  o: CpOptions,
  err: NodeJS.WriteStream,
): Promise<void> {
  const api = containers(globals);
  const d = await statIn(api, dest.container, dest.path, true);
  let into: string;
  let chunks: AsyncIterable<Buffer>;
  if (src === '-') {
    if (!d) throw new CpError(`Could not find the file ${dest.path} in container ${dest.container}`);
    if (!isDir(d.mode)) throw new CpError(`destination "${dest.container}:${dest.path}" must be a directory`);
    into = dest.path;
    chunks = process.stdin as AsyncIterable<Buffer>;
  } else {
    const s = localStat(src, o.follow);
    if (!s) throw new CpError(`lstat ${resolve(src)}: no such file or directory`);
    const local = resolve(src);
    const target = destination(src, s.isDirectory(), basename(local), dest.path, d && { isDir: isDir(d.mode) }, posix);
    into = target.into;
    // -L: the tar carries what the link points to, under the link's name.
    const real = o.follow ? realpathSync.native(local) : local;
    const owner = o.archive ? undefined : { uid: 0, gid: 0 };
    chunks = (async function* () {
      const fd = openat2(AT.FDCWD, dirname(real), O.PATH | O.DIRECTORY, 0, 0);
      try {
        yield* pathTar(fd, basename(real), target.as, { owner });
      } finally {
        closeFd(fd);
      }
    })();
  }
  const { stream, response } = api.copyIn();
  response.catch(() => undefined); // awaited below
  stream.write({ part: { $case: 'header', value: { ref: dest.container, path: into } } });
  let size = 0;
  try {
    for await (const chunk of chunks) {
      size += chunk.length;
      if (!stream.write({ part: { $case: 'chunk', value: chunk } })) await new Promise((r) => stream.once('drain', r));
    }
  } catch (e) {
    stream.destroy();
    await response.catch(() => undefined);
    throw e;
  }
  stream.end();
  await response;
  if (!o.quiet) err.write(`Successfully copied ${humanSize(size)} to ${dest.container}:${dest.path}\n`);
}

export const command: Command = {
  name: 'cp',
  usage:
    'ctrctl cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       ctrctl cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH',
  summary: 'Copy files/folders between a container and the local filesystem',
  flags: [
    { name: 'archive', short: 'a', type: 'bool', help: 'Archive mode (copy all uid/gid information)' },
    { name: 'follow-link', short: 'L', type: 'bool', help: 'Always follow symbol link in SRC_PATH' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Suppress progress output during copy' },
  ],
  minArgs: 2,
  maxArgs: 2,
  examples: [
    'ctrctl cp web:/etc/nginx/nginx.conf .',
    'ctrctl cp ./site/. web:/www',
    'ctrctl cp web:/var/log - | tar t',
  ],
  async run({ args, flags, globals, out, err }) {
    const [a, b] = args;
    const src = splitCpArg(a);
    const dest = splitCpArg(b);
    const o = { follow: flags['follow-link'] === true, archive: flags.archive === true, quiet: flags.quiet === true };
    try {
      if (src && dest) throw new CpError('copying between containers is not supported');
      if (!src && !dest) throw new CpError('must specify at least one container source');
      if (src && !src.path) throw new CpError(`invalid container path ${a}: the path is empty`);
      if (dest && !dest.path) throw new CpError(`invalid container path ${b}: the path is empty`);
      if (src) await copyFromContainer(globals, src, b, o, err, out);
      else if (dest) await copyToContainer(globals, a, dest, o, err);
    } catch (e) {
      if (e instanceof CpError) {
        err.write(`Error: ${e.message}\n`);
        return 1;
      }
      throw e;
    }
  },
};
