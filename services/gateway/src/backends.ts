import { Client, type ChannelCredentials, type ClientOptions } from '@grpc/grpc-js';
import { checkHealth } from '@gantry/kit';
import { GatewayError, Status } from './status.js';

/** Services every Gantry process serves beside its own (flags, admin): the caller says which target it means. */
export const PER_PROCESS_SERVICES: ReadonlySet<string> = new Set(['gantry.flags.v1.FlagsService', 'gantry.admin.v1.AdminService']);

/** The request header that picks the target of a per-process service when several are configured. */
export const TARGET_HEADER = 'gantry-target';

/** The target that serves a gRPC service: the second segment of its package (`gantry.log.v1.LogService` → `log`). */
export function targetOfService(serviceTypeName: string): string {
  return serviceTypeName.split('.')[1] ?? '';
}

/** The gRPC service name each target's health is reported under (grpc.health.v1). */
export interface BackendTarget {
  target: string;
  /** Full service name whose health stands for the target, e.g. gantry.log.v1.LogService. */
  service: string;
  /** Undefined: no address configured and not run in this process. */
  address: string | undefined;
}

/** A health check of one target: its grpc.health.v1 status and how long the check took. */
export interface TargetHealth {
  target: string;
  status: string;
  latencyMs: number;
  /** Why it is not SERVING, for a person. */
  error?: string;
}

/**
 * The gRPC channels to the services: one generic grpc-js client per distinct address (calls go
 * by method path with Buffer serializers, so no service needs code here), over mTLS as the
 * gateway's own workload.
 */
export class Backends {
  private readonly clients = new Map<string, Client>();

  constructor(
    readonly targets: readonly BackendTarget[],
    private readonly creds: ChannelCredentials,
    private readonly options: Partial<ClientOptions>,
  ) {}

  /** The client for `serviceTypeName` (the target header chooses for per-process services); GatewayError when none can serve it. */
  clientFor(serviceTypeName: string, targetHeader: string | undefined): Client {
    const address = this.addressFor(serviceTypeName, targetHeader);
    let client = this.clients.get(address);
    if (!client) {
      client = new Client(address, this.creds, this.options);
      this.clients.set(address, client);
    }
    return client;
  }

  private addressFor(serviceTypeName: string, targetHeader: string | undefined): string {
    if (PER_PROCESS_SERVICES.has(serviceTypeName)) {
      const known = this.targets.filter((t) => t.address !== undefined);
      const names = known.map((t) => t.target).join(', ');
      if (targetHeader !== undefined) {
        const chosen = known.find((t) => t.target === targetHeader);
        if (!chosen) throw new GatewayError(Status.INVALID_ARGUMENT, `${TARGET_HEADER}: "${targetHeader}" is not a target this gateway reaches; choose one of: ${names || '(none configured)'}`);
        return chosen.address!;
      }
      const distinct = [...new Set(known.map((t) => t.address!))];
      if (distinct.length === 1) return distinct[0]!;
      if (distinct.length === 0) throw new GatewayError(Status.UNAVAILABLE, `no service address is configured for ${serviceTypeName}; set GANTRY_PEERS_<TARGET>_ADDRESS`);
      throw new GatewayError(Status.INVALID_ARGUMENT, `${serviceTypeName} is served by every target, each its own; say which with the header "${TARGET_HEADER}: <target>" (one of: ${names})`);
    }
    const target = targetOfService(serviceTypeName);
    const backend = this.targets.find((t) => t.target === target);
    if (!backend?.address) {
      throw new GatewayError(Status.UNAVAILABLE, `the gateway has no address for the ${target} service: set GANTRY_PEERS_${target.toUpperCase()}_ADDRESS (peers.${target}.address), or run it in this process`);
    }
    return backend.address;
  }

  /** grpc.health.v1 Check of one target's service, with its latency. */
  async health(backend: BackendTarget, timeoutMs: number): Promise<TargetHealth> {
    const started = performance.now();
    if (!backend.address) return { target: backend.target, status: 'UNKNOWN', latencyMs: 0, error: `no address configured (GANTRY_PEERS_${backend.target.toUpperCase()}_ADDRESS)` };
    const res = await checkHealth(backend.address, this.creds, this.options, backend.service, timeoutMs);
    const latencyMs = Math.round((performance.now() - started) * 100) / 100;
    if (res.err) return { target: backend.target, status: res.err.code === Status.NOT_FOUND ? 'SERVICE_UNKNOWN' : 'UNREACHABLE', latencyMs, error: res.err.details || res.err.message };
    return { target: backend.target, status: res.status ?? 'UNKNOWN', latencyMs };
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
