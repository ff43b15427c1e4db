import { dial } from '@ctr/common/grpc';
import { ImagesService } from '@ctr/api/images/v1/images';
import { ContainersService } from '@ctr/api/containers/v1/containers';
import { SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
const st = process.env.CTR_STATE;
const time = async (label, f) => {
  const ts = [];
  for (let i = 0; i < 6; i++) {
    const t = performance.now();
    await f().catch((e) => {});
    ts.push((performance.now() - t).toFixed(1));
  }
  console.log(label, ts.join(' '));
};
const im = dial(ImagesService, `${st}/image-service.sock`);
await time('images.list', () => im.list({ filters: [] }));
await time('images.get(missing)', () => im.get({ name: 'nope' }));
const cs = dial(ContainersService, `${st}/container-service.sock`);
await time('containers.list', () => cs.list({ all: true, filters: [], size: false }));
await time('containers.get(missing)', () => cs.get({ ref: 'nope' }));
const sn = dial(SnapshotsService, `${st}/snapshotter.sock`);
await time('snapshots.stat(missing)', () => sn.stat({ key: 'nope' }));
process.exit(0);
