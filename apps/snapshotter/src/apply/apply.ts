/** Runs a layer apply in a worker thread (see worker.ts) and waits for its result. */
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Usage } from '../usage.js';
import type { ApplyJob, ApplyResult } from './stream.js';

/** The compiled worker, also when this module runs from its TypeScript source (tests). */
function workerPath(): string {
  const here = fileURLToPath(import.meta.url);
  return here.endsWith('.ts')
    ? here.replace(/\/src\/apply\/apply\.ts$/, '/dist/apply/worker.js')
    : here.replace(/apply\.js$/, 'worker.js');
}

export class ApplyError extends Error {
  constructor(
    message: string,
    /** The layer itself is bad (format, safety, digest), as against a failure of this host. */
    readonly badLayer: boolean,
  ) {
    super(message);
    this.name = 'ApplyError';
  }
}

/** Chunks in flight to the worker before waiting for it to take more. */
const WINDOW = 8;

export async function applyLayer(
  job: ApplyJob,
  chunks?: AsyncIterable<Uint8Array>,
): Promise<{ diffId: string; size: number; entries: number; usage: Usage; deferred: string[] }> {
  const worker = new Worker(workerPath(), { workerData: job });
  let inFlight = 0;
  let stopped = false;
  let wake: (() => void) | undefined;
  const done = new Promise<ApplyResult>((resolve, reject) => {
    worker.on('message', (m: ApplyResult | 'more') => {
      if (m === 'more') {
        inFlight--;
        wake?.();
        return;
      }
      resolve(m);
    });
    worker.on('error', reject);
    worker.on('exit', (code) => reject(new Error(`the apply worker exited (${code}) without a result`)));
  });
  try {
    if (chunks && job.path && job.follow) {
      // The client's stream carries no chunks here: its end (or its failure, or a chunk it had no
      // business sending) says the file is written, and the apply takes what the file holds.
      void (async () => {
        try {
          for await (const _ of chunks) break;
        } finally {
          worker.postMessage({ end: true });
        }
      })().catch(() => undefined);
    } else if (chunks && !job.path) {
      const feeding = (async () => {
        for await (const chunk of chunks) {
          while (inFlight >= WINDOW && !stopped) await new Promise<void>((r) => (wake = r));
          if (stopped) return;
          inFlight++;
          const copy = new Uint8Array(chunk);
          worker.postMessage({ chunk: copy }, [copy.buffer]);
        }
        worker.postMessage({ end: true });
      })();
      // The worker may fail (a bad entry) before the input ends: its result wins.
      const first = await Promise.race([done, feeding.then(() => undefined)]);
      const result = first ?? (await done);
      feeding.catch(() => undefined);
      return unwrap(result);
    }
    return unwrap(await done);
  } finally {
    stopped = true;
    wake?.();
    await worker.terminate();
  }
}

function unwrap(r: ApplyResult) {
  if (r.ok) return { diffId: r.diffId, size: r.size, entries: r.entries, usage: r.usage, deferred: r.deferred };
  const bad = r.name === 'LayerError' || r.name === 'TarFormatError' || r.name === 'DecompressError';
  throw new ApplyError(r.message, bad);
}
