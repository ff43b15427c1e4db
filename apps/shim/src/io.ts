/**
 * A container process's stdio, as the shim holds it: pipes, or the master
 * side of a pty that ctr-init made inside the container (its slave is the
 * process's stdin, stdout and stderr). Output
 * goes to the json-file log (the container's init) and to whoever is attached;
 * an exec's output waits in a small buffer for its first attach.
 */
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { ReadStream } from 'node:tty';
import { setWindowSize } from '@ctr/sys';
import type { JsonLogWriter, StreamName } from '@ctr/common/jsonlog';

export type Stdio = 'ignore' | 'pipe' | number;

export interface IoOptions {
  terminal: boolean;
  stdin: boolean;
  log?: JsonLogWriter;
  /** Keep output for the first subscriber (execs: they have no log). */
  buffer?: boolean;
}

export type OutputListener = (stream: StreamName, data: Buffer) => void;

const BUFFER_LIMIT = 1024 * 1024;

export class ProcessIO {
  readonly stdio: [Stdio, Stdio, Stdio];
  readonly done: Promise<void>;
  #master?: number;
  #pty?: ReadStream;
  #stdin?: Writable;
  #listeners = new Set<OutputListener>();
  #pending?: [StreamName, Buffer][] = [];
  #pendingBytes = 0;
  #open = 0;
  #doneResolve!: () => void;

  constructor(readonly opts: IoOptions) {
    this.done = new Promise((resolve) => {
      this.#doneResolve = resolve;
    });
    if (!opts.buffer) this.#pending = undefined;
    if (opts.terminal) {
      // ctr-init makes the pty inside the container and hands over the master (takeTerminal).
      this.stdio = ['ignore', 'ignore', 'ignore'];
    } else {
      this.stdio = [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'];
    }
  }

  get terminal(): boolean {
    return this.opts.terminal;
  }

  /** Takes the child's ends once it is spawned (the slave is the child's now: the shim closes its copy). */
  connect(child: ChildProcess): void {
    // A terminal's master arrives later, from inside the container (takeTerminal).
    if (this.opts.terminal) return;
    this.#stdin = child.stdin ?? undefined;
    this.#stdin?.on('error', () => undefined);
    if (child.stdout) this.#follow(child.stdout, 'stdout');
    if (child.stderr) this.#follow(child.stderr, 'stderr');
    if (this.#open === 0) this.#doneResolve();
  }

  /** Follows a pty master: the terminal's one stream is the process's stdout. */
  takeTerminal(master: number): void {
    this.#master = master;
    // node:tty loaded for a terminal only: not with every shim (some 1 ms of its boot).
    const pty = new (process.getBuiltinModule('node:tty').ReadStream)(master);
    this.#pty = pty;
    this.#stdin = pty;
    this.#follow(pty, 'stdout');
  }

  /** Releases what was opened when the process could not be started. */
  abandon(): void {
    this.#pty?.destroy();
    this.#pty = undefined;
    this.#master = undefined;
    this.#doneResolve();
  }

  #follow(stream: Readable, name: StreamName) {
    this.#open++;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.opts.log?.flush(name);
      if (--this.#open === 0) this.#doneResolve();
    };
    stream.on('data', (data: Buffer) => this.#emit(name, data));
    stream.on('end', end);
    stream.on('close', end);
    // A pty master reads EIO once the last slave is closed: that is its end.
    stream.on('error', end);
  }

  #emit(stream: StreamName, data: Buffer) {
    this.opts.log?.write(stream, data);
    if (this.#listeners.size === 0 && this.#pending) {
      if (this.#pendingBytes + data.length <= BUFFER_LIMIT) {
        this.#pending.push([stream, data]);
        this.#pendingBytes += data.length;
      }
      return;
    }
    for (const l of this.#listeners) l(stream, data);
  }

  /** Follows the output; the first subscriber gets what was buffered. */
  subscribe(listener: OutputListener): () => void {
    this.#listeners.add(listener);
    const pending = this.#pending;
    this.#pending = undefined;
    for (const [s, d] of pending ?? []) listener(s, d);
    return () => this.#listeners.delete(listener);
  }

  get hasStdin(): boolean {
    return this.opts.terminal || this.opts.stdin;
  }

  writeStdin(data: Buffer): void {
    if (this.#stdin && !this.#stdin.writableEnded) this.#stdin.write(data);
  }

  /** Ends stdin: EOF on the pipe, or the terminal's EOF character. */
  closeStdin(): void {
    if (!this.#stdin || this.#stdin.writableEnded) return;
    if (this.#pty) this.#pty.write('\x04');
    else this.#stdin.end();
  }

  resize(cols: number, rows: number): void {
    if (this.#master === undefined) throw new Error('the process has no terminal');
    setWindowSize(this.#master, cols, rows);
  }

  /** Closes the shim's ends (after the process and its output are done). */
  close(): void {
    this.#pty?.destroy();
    this.#pty = undefined;
    this.#master = undefined;
    this.opts.log?.close();
  }
}
