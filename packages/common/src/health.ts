/** The standard gRPC health service, served by every daemon beside its own API. */
import { type HealthCheckRequest, HealthCheckResponse_ServingStatus as Serving, HealthService } from '@ctr/api/health';
import type { ServiceBinding } from './grpc-impl.js';
import { implement } from './grpc-impl.js';
import { notFound } from './errors.js';

export { Serving };

export class HealthReporter {
  readonly #status = new Map<string, Serving>([['', Serving.SERVING]]);

  /** Sets the status of one service name, or of the whole server with ''. */
  set(service: string, status: Serving): void {
    this.#status.set(service, status);
  }

  check({ service }: HealthCheckRequest): Serving {
    const status = this.#status.get(service);
    if (status === undefined) throw notFound(`unknown service ${service}`);
    return status;
  }

  binding(): ServiceBinding {
    return {
      definition: HealthService,
      implementation: implement(HealthService, {
        check: async (req) => ({ status: this.check(req) }),
      }),
    };
  }
}
