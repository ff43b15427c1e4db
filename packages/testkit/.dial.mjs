import { dial } from '@ctr/common/grpc';
import { ImagesService } from '@ctr/api/images/v1/images';
const sock = `${process.env.CTR_STATE}/image-service.sock`;
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  const c = dial(ImagesService, sock);
  await c.list({ filters: [] }).catch((e) => console.log(e.message));
  const t1 = performance.now();
  await c.list({ filters: [] });
  const t2 = performance.now();
  console.log('first', (t1 - t0).toFixed(1), 'second', (t2 - t1).toFixed(1));
  c.close();
}
