/** What most engine tests start with: an isolated engine, a real registry, and busybox pushed to it by skopeo. */
import { join } from 'node:path';
import { type EngineOptions, TestEngine } from './engine.js';
import { buildBusyboxImage, pushLayout } from './images.js';
import { TestRegistry } from './registry.js';

export interface EngineAndRegistry {
  engine: TestEngine;
  registry: TestRegistry;
  /** `<registry>/busybox:1`, pushed but not pulled. */
  image: string;
  stop(): Promise<void>;
}

/** Starts both at once; when either fails, whichever came up is stopped before the error is thrown. */
export async function startEngineAndRegistry(opts: EngineOptions = {}): Promise<EngineAndRegistry> {
  const [e, r] = await Promise.allSettled([TestEngine.start(opts), TestRegistry.start()]);
  const stop = async () => {
    try {
      if (e.status === 'fulfilled') await e.value.stop();
    } finally {
      if (r.status === 'fulfilled') await r.value.stop();
    }
  };
  if (e.status === 'rejected' || r.status === 'rejected') {
    await stop().catch(() => undefined);
    throw e.status === 'rejected' ? e.reason : (r as PromiseRejectedResult).reason;
  }
  const engine = e.value;
  const registry = r.value;
  const image = `${registry.host}/busybox:1`;
  try {
    const layout = await buildBusyboxImage(join(engine.dir, 'img'), '1');
    await pushLayout(layout.dir, '1', image);
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return { engine, registry, image, stop };
}

/** ctrctl against `engine` that throws on a non-zero exit (with its stderr) and resolves to the trimmed stdout. */
export function okCtrctl(engine: TestEngine): (args: string[]) => Promise<string> {
  return async (args) => {
    const r = await engine.ctrctl(args);
    if (r.code !== 0) throw new Error(`ctrctl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };
}
