/**
 * container-service: container metadata, runtime specs, bundles, shims (which
 * it launches detached and re-adopts after its own restart), volumes and
 * restart policies.
 */
import { ContainersService, TasksService, VolumesService } from '@ctr/api/containers/v1/containers';
import { runDaemon } from '@ctr/common/daemon';
import { implement } from '@ctr/common/grpc';

await runDaemon({
  name: 'container-service',
  services: () => [
    { definition: ContainersService, implementation: implement(ContainersService, {}) },
    { definition: TasksService, implementation: implement(TasksService, {}) },
    { definition: VolumesService, implementation: implement(VolumesService, {}) },
  ],
});
