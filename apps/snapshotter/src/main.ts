/** snapshotter: overlay2 snapshots and layer application; knows nothing of images or containers. */
import { SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import { runDaemon } from '@ctr/common/daemon';
import { implement } from '@ctr/common/grpc';

await runDaemon({
  name: 'snapshotter',
  services: () => [{ definition: SnapshotsService, implementation: implement(SnapshotsService, {}) }],
});
