/**
 * network-service: networks (bridge, host, none), IPAM, network namespaces,
 * veth endpoints, iptables NAT and port maps, and the names containers see.
 */
import { join } from 'node:path';
import { NetworksService } from '@ctr/api/networks/v1/networks';
import { runDaemon } from '@ctr/common/daemon';
import { NetworkManager } from './networks.js';
import { networksApi } from './service.js';
import { Store } from './store.js';

let manager: NetworkManager | undefined;
let store: Store | undefined;
let started: Promise<void> | undefined;

await runDaemon({
  name: 'network-service',
  api: [NetworksService],
  services: async (ctx) => {
    store = new Store(join(ctx.config.root, 'network', 'network.db'));
    manager = new NetworkManager(store, ctx.config, ctx.log, ctx.bus);
    started = manager.start();
    // Calls wait for the reconcile; ready() below reports its failure.
    started.catch(() => undefined);
    return [{ definition: NetworksService, implementation: networksApi(manager, started) }];
  },
  ready: async () => started,
  stop: async () => {
    await manager?.stop();
    store?.close();
  },
});
