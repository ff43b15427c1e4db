/**
 * Transfer progress as docker shows it: on a terminal, one line per layer
 * redrawn in place with a bar (on stderr, so stdout stays clean); otherwise
 * one plain line per layer and state change.
 */
import { type TransferProgress, TransferState } from '@ctr/api/images/v1/images';
import { humanSize } from './format.js';

const shortId = (digest: string) => digest.replace(/^sha256:/, '').slice(0, 12);

interface Line {
  id: string;
  text: string;
}

export class ProgressView {
  readonly #lines: Line[] = [];
  readonly #byDigest = new Map<string, Line>();
  #drawn = 0;
  #lastDraw = 0;

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly tty: boolean,
    private readonly verb: 'pull' | 'push',
  ) {}

  /** A line that is not a layer's ("latest: Pulling from library/busybox"). */
  note(text: string): void {
    if (this.tty) {
      this.#lines.push({ id: '', text });
      this.#draw(true);
    } else this.out.write(`${text}\n`);
  }

  update(p: TransferProgress): void {
    const d = p.descriptor;
    if (!d) return;
    const text = this.#describe(p);
    if (!text) return;
    let line = this.#byDigest.get(d.digest);
    if (!line) {
      line = { id: shortId(d.digest), text: '' };
      this.#byDigest.set(d.digest, line);
      this.#lines.push(line);
    }
    if (line.text === text) return;
    const stateChanged = line.text.split(' ')[0] !== text.split(' ')[0];
    line.text = text;
    if (this.tty) this.#draw(stateChanged);
    else if (stateChanged) this.out.write(`${line.id}: ${text}\n`);
  }

  /** Draws the last state and leaves the cursor below it. */
  done(): void {
    if (this.tty) this.#draw(true);
  }

  #describe(p: TransferProgress): string {
    const total = Number(p.total);
    const offset = Number(p.offset);
    const bar = () => {
      if (!this.tty || !total) return '';
      const width = 50;
      const filled = Math.min(width, Math.floor((offset / total) * width));
      return ` [${'='.repeat(Math.max(0, filled - 1))}${filled ? '>' : ''}${' '.repeat(width - filled)}]  ${humanSize(offset)}/${humanSize(total)}`;
    };
    switch (p.state) {
      case TransferState.TRANSFER_STATE_WAITING:
        return this.verb === 'pull' ? 'Pulling fs layer' : 'Preparing';
      case TransferState.TRANSFER_STATE_DOWNLOADING:
        return `Downloading${bar()}`;
      case TransferState.TRANSFER_STATE_VERIFYING:
        return 'Verifying Checksum';
      case TransferState.TRANSFER_STATE_EXTRACTING:
        return 'Extracting';
      case TransferState.TRANSFER_STATE_UPLOADING:
        return `Pushing${bar()}`;
      case TransferState.TRANSFER_STATE_EXISTS:
        return this.verb === 'pull' ? 'Download complete' : p.message || 'Layer already exists';
      case TransferState.TRANSFER_STATE_DONE:
        return p.message || (this.verb === 'pull' ? 'Pull complete' : 'Pushed');
      default:
        return '';
    }
  }

  #draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    let s = this.#drawn ? `\x1b[${this.#drawn}A` : '';
    for (const l of this.#lines) s += `\x1b[2K${l.id ? `${l.id}: ` : ''}${l.text}\n`;
    this.#drawn = this.#lines.length;
    this.out.write(s);
  }
}
