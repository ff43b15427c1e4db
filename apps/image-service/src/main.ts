/**
 * image-service: the content store, image metadata, registry transfers,
 * import/export and content GC. Unpacking goes through the snapshotter.
 */
import { join } from 'node:path';
import { ContentService } from '@ctr/api/content/v1/content';
import { ImagesService } from '@ctr/api/images/v1/images';
import { SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import { runDaemon } from '@ctr/common/daemon';
import { dial } from '@ctr/common/grpc';
import { contentApi } from './content/service.js';
import { ContentStore } from './content/store.js';
import { Images } from './images.js';
import { Metadata } from './metadata.js';
import { CredentialStore } from './registry/credentials.js';
import { imagesApi } from './service.js';

let meta: Metadata | undefined;

await runDaemon({
  name: 'image-service',
  api: [ImagesService, ContentService],
  services: async (ctx) => {
    const content = await new ContentStore(ctx.config.root).init();
    const dir = join(ctx.config.root, 'images');
    meta = new Metadata(join(dir, 'meta.db'));
    const snapshots = dial(SnapshotsService, ctx.layout.serviceSocket('snapshotter'));
    const images = new Images(content, meta, snapshots, ctx.log);
    const stale = images.dropStaleLeases();
    if (stale) ctx.log.info({ leases: stale }, 'dropped the leases of operations cut short by the last exit');
    const credentials = new CredentialStore(join(dir, 'credentials.json'));
    return [
      {
        definition: ImagesService,
        implementation: imagesApi({ images, config: ctx.config, credentials, bus: ctx.bus }),
      },
      { definition: ContentService, implementation: contentApi(content, images) },
    ];
  },
  stop: async () => meta?.close(),
});
