/**
 * container-service: container metadata, runtime specs, bundles, shims (which
 * it launches detached and re-adopts after its own restart), volumes and
 * restart policies.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContainersService, TasksService, VolumesService } from '@ctr/api/containers/v1/containers';
import { ImagesService } from '@ctr/api/images/v1/images';
import { NetworksService } from '@ctr/api/networks/v1/networks';
import { SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import { runDaemon } from '@ctr/common/daemon';
import { dial } from '@ctr/common/grpc';
import { Containers } from './containers.js';
import { containersApi } from './service.js';
import { Store } from './store.js';
import { Volumes } from './volumes.js';

let manager: Containers | undefined;
let store: Store | undefined;
let started: Promise<void> | undefined;

await runDaemon({
  name: 'container-service',
  api: [ContainersService, TasksService, VolumesService],
  services: async (ctx) => {
    const { config, layout, log, bus } = ctx;
    store = new Store(join(config.root, 'containers.db'));
    const volumes = new Volumes(store, config.root, bus);
    manager = new Containers({
      config,
      layout,
      log,
      bus,
      store,
      volumes,
      images: dial(ImagesService, layout.serviceSocket('image-service')),
      snapshots: dial(SnapshotsService, layout.serviceSocket('snapshotter')),
      networks: dial(NetworksService, layout.serviceSocket('network-service')),
      initBinary: process.env.CTR_INIT ?? fileURLToPath(new URL('../../../native/build/ctr-init', import.meta.url)),
    });
    const m = manager;
    started = (async () => {
      await m.reconcile();
      await m.startPolicies();
    })();
    started.catch(() => undefined);
    return containersApi(m, volumes, log, started);
  },
  ready: async () => started,
  stop: async () => {
    await manager?.close();
    store?.close();
  },
});
