import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { Server, ServerCredentials } from '@grpc/grpc-js';

/** The overall status lives under the empty service name, per the grpc.health.v1 protocol. */
export const OVERALL = '';

/**
 * Serving status per service, driven by real readiness checks (database reachable, migrations
 * applied). Shared by the mTLS port and the plaintext probe port.
 */
export class HealthState {
  readonly implementation = new HealthImplementation({ [OVERALL]: 'NOT_SERVING' });
  private readonly statuses = new Map<string, ServingStatus>([[OVERALL, 'NOT_SERVING']]);
  private draining = false;

  constructor(private readonly services: readonly string[]) {
    for (const s of services) this.set(s, 'NOT_SERVING');
  }

  private set(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    this.implementation.setStatus(service, status);
  }

  /** Marks every service SERVING or NOT_SERVING after a readiness check; ignored once draining. */
  setReady(ready: boolean): void {
    if (this.draining) return;
    const status: ServingStatus = ready ? 'SERVING' : 'NOT_SERVING';
    for (const s of [OVERALL, ...this.services]) this.set(s, status);
  }

  /** On shutdown: NOT_SERVING for good, so load balancers stop sending new calls. */
  drain(): void {
    this.setReady(false);
    this.draining = true;
  }

  status(service = OVERALL): ServingStatus {
    return this.statuses.get(service) ?? 'UNKNOWN';
  }
}

/**
 * grpc.health.v1 alone on a plaintext port, for a process without service modules (the operator),
 * so kubelet's gRPC probes work the same for every target.
 */
export async function startHealthServer(host: string, port: number, health: HealthState): Promise<{ port: number; close(): void }> {
  const server = new Server({ 'grpc.max_receive_message_length': 4096, 'grpc.max_concurrent_streams': 16 });
  health.implementation.addToServer(server);
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const bound = await new Promise<number>((resolve, reject) => server.bindAsync(address, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { port: bound, close: () => server.forceShutdown() };
}
