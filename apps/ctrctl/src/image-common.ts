/** What the image commands share: reading a transfer stream, names and sizes as docker shows them. */
import { type Image, type TransferProgress, TransferState } from '@ctr/api/images/v1/images';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { readStream } from '@ctr/common/grpc-client';
import { familiarString, parseReference } from '@ctr/common/reference';
import type { ProgressView } from './progress.js';

/** busybox:latest for docker.io/library/busybox:latest; <none> parts for an unnamed image. */
export function repoAndTag(name: string): { repository: string; tag: string; familiar: string } {
  if (name.startsWith('<none>')) return { repository: '<none>', tag: '<none>', familiar: '<none>:<none>' };
  try {
    const ref = parseReference(name, { defaultTag: false });
    const familiar = familiarString(ref);
    const repository = familiarString({ ...ref, tag: undefined, digest: undefined });
    return { repository, tag: ref.tag ?? '<none>', familiar };
  } catch {
    return { repository: name, tag: '<none>', familiar: name };
  }
}

export const shortId = (digest: string) => digest.replace(/^sha256:/, '').slice(0, 12);

/** Follows a pull or push, drawing its progress; resolves to the final image and whether bytes moved. */
export async function followTransfer(
  stream: ClientReadableStream<TransferProgress>,
  view: ProgressView | undefined,
): Promise<{ image?: Image; moved: boolean; digest: string; size: number }> {
  let image: Image | undefined;
  let moved = false;
  let digest = '';
  let size = 0;
  for await (const p of readStream(stream)) {
    if (p.image) {
      image = p.image;
      digest = p.message;
      size = Number(p.total);
    }
    if (
      p.descriptor &&
      (p.state === TransferState.TRANSFER_STATE_DOWNLOADING || p.state === TransferState.TRANSFER_STATE_UPLOADING)
    )
      moved = true;
    view?.update(p);
  }
  view?.done();
  return { image, moved, digest, size };
}
