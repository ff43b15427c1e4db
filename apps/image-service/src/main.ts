/**
 * image-service: the content store, image metadata, registry transfers,
 * import/export and content GC. Unpacking goes through the snapshotter.
 */
import { ContentService } from '@ctr/api/content/v1/content';
import { ImagesService } from '@ctr/api/images/v1/images';
import { runDaemon } from '@ctr/common/daemon';
import { implement } from '@ctr/common/grpc';
import { contentApi } from './content/service.js';
import { ContentStore } from './content/store.js';

await runDaemon({
  name: 'image-service',
  services: async (ctx) => {
    const content = await new ContentStore(ctx.config.root).init();
    return [
      { definition: ImagesService, implementation: implement(ImagesService, {}) },
      { definition: ContentService, implementation: contentApi(content) },
    ];
  },
});
