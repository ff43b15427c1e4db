/**
 * Push: the blobs of an image (config and layers), a few at a time, each
 * skipped when the registry has it, mounted from another repository of the
 * same registry when one of our images came from there, uploaded otherwise;
 * then the manifest of the platform, last, so the tag never points at
 * missing content.
 */
import { createReadStream } from 'node:fs';
import { parseReference } from '@ctr/common/reference';
import type { Images, ResolvedImage } from './images.js';
import { type Descriptor, hostPlatform } from './oci.js';
import { limiter, type Progress } from './pull.js';
import type { Repository } from './registry/client.js';

export interface PushOptions {
  repo: Repository;
  image: ResolvedImage;
  signal: AbortSignal;
  progress: (p: Progress) => void;
  maxConcurrent?: number;
}

/** Repositories of the same registry whose images hold a blob: candidates to mount it from. */
function mountSources(repo: Repository, digest: string, holders: Map<string, Set<string>>): string[] {
  const out: string[] = [];
  for (const [name, digests] of holders) {
    if (!digests.has(digest)) continue;
    try {
      const ref = parseReference(name);
      if (ref.domain === repo.ref.domain && ref.path !== repo.ref.path && !out.includes(ref.path)) out.push(ref.path);
    } catch {}
  }
  return out;
}

export async function push(images: Images, opts: PushOptions): Promise<string> {
  const { repo, image, signal, progress } = opts;
  // What each local image holds, for cross-repository mounts: looked up once, when a blob is missing.
  let holders: Promise<Map<string, Set<string>>> | undefined;
  const holdersOnce = () => {
    holders ??= (async () => {
      const map = new Map<string, Set<string>>();
      for (const rec of images.meta.listImages()) {
        const r = await images.resolve(rec, hostPlatform()).catch(() => undefined);
        if (r) map.set(rec.name, new Set([r.configDesc.digest, ...r.manifest.layers.map((l) => l.digest)]));
      }
      return map;
    })();
    return holders;
  };
  const limit = limiter(opts.maxConcurrent ?? 3);
  const blobs: Descriptor[] = [...image.manifest.layers, image.configDesc];
  for (const b of blobs) progress({ desc: b, state: 'waiting', offset: 0, total: b.size });
  await Promise.all(
    blobs.map((desc) =>
      limit(async () => {
        if (await repo.blobExists(desc.digest, signal)) {
          progress({ desc, state: 'exists', offset: desc.size, total: desc.size, message: 'Layer already exists' });
          return;
        }
        for (const from of mountSources(repo, desc.digest, await holdersOnce())) {
          if (await repo.mountBlob(desc.digest, from, signal)) {
            progress({ desc, state: 'exists', offset: desc.size, total: desc.size, message: `Mounted from ${from}` });
            return;
          }
        }
        const path = images.content.blobPath(desc.digest);
        let last = 0;
        await repo.uploadBlob(
          desc.digest,
          desc.size,
          () =>
            (async function* () {
              let sent = 0;
              for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
                sent += (chunk as Buffer).length;
                const now = Date.now();
                if (now - last > 100) {
                  last = now;
                  progress({ desc, state: 'uploading', offset: sent, total: desc.size });
                }
                yield chunk as Buffer;
              }
            })() as never,
          signal,
        );
        progress({ desc, state: 'done', offset: desc.size, total: desc.size, message: 'Pushed' });
      }),
    ),
  );

  // The platform's manifest goes under the tag (an index we hold only part of cannot be pushed whole).
  const tag = repo.ref.digest ?? repo.ref.tag ?? 'latest';
  const manifestBytes = await images.content.read(image.manifestDesc.digest);
  return repo.putManifest(tag, image.manifestDesc.mediaType, manifestBytes, signal);
}
