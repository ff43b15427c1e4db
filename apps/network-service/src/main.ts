/** network-service: networks, IPAM, network namespaces, veth endpoints, iptables port maps, names. */
import { NetworksService } from '@ctr/api/networks/v1/networks';
import { runDaemon } from '@ctr/common/daemon';
import { implement } from '@ctr/common/grpc';

await runDaemon({
  name: 'network-service',
  services: () => [{ definition: NetworksService, implementation: implement(NetworksService, {}) }],
});
