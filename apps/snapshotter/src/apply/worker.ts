/**
 * Applies one layer, off the daemon's event loop: the extractor's file system
 * calls are synchronous (one fd-relative syscall after another, no thread-pool
 * round trips), which is what makes it fast, and what would stall every other
 * RPC if it ran on the main thread.
 *
 * In: workerData (ApplyJob). The layer comes from `path` (as it grows, with
 * `follow`, until `{ end: true }` is posted), or as chunks posted on the port
 * (each answered with "more" once consumed). Out: one ApplyResult.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { applyStream, type ApplyJob, type ApplyResult } from './stream.js';
import { followFile, fromFile, fromPort } from './sources.js';

const job = workerData as ApplyJob;
const port = parentPort;
if (!port) throw new Error('the apply worker runs as a worker thread');

let result: ApplyResult;
try {
  const source = job.path
    ? job.follow
      ? followFile(job.path, job.follow.size, port)
      : fromFile(job.path)
    : fromPort(port);
  result = { ok: true, ...(await applyStream(job, source)) };
} catch (err) {
  const e = err as Error;
  result = { ok: false, name: e.name, message: e.message };
}
port.postMessage(result);
