/**
 * image-service: the content store, image metadata, registry transfers,
 * import/export and content GC. Unpacking goes through the snapshotter.
 */
import { ContentService } from '@ctr/api/content/v1/content';
import { ImagesService } from '@ctr/api/images/v1/images';
import { runDaemon } from '@ctr/common/daemon';
import { implement } from '@ctr/common/grpc';

await runDaemon({
  name: 'image-service',
  services: () => [
    { definition: ImagesService, implementation: implement(ImagesService, {}) },
    { definition: ContentService, implementation: implement(ContentService, {}) },
  ],
});
