import { HealthImplementation, service as healthService, type ServingStatus } from 'grpc-health-check';
import { Server, ServerCredentials, status as GrpcStatus, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition } from '@grpc/grpc-js';
import { startProbePort, type ProbePort, type ProbeRoute } from './probe-port.js';

/** The overall status lives under the empty service name, per the grpc.health.v1 protocol. */
export const OVERALL = '';

// Kubernetes' three probes each ask a health name of their own (`grpc: {port: 7080, service: …}`),
// so that one failing check does not do another's job: a database outage takes a pod out of its
// Services (readiness) but never gets it restarted (liveness), since a restart brings no database back.

/** SERVING from the moment the health port answers until the process exits, draining included; never depends on the database or a peer. */
export const LIVENESS = 'liveness';
/** NOT_SERVING until start-up is done (database opened, migrations applied, modules created, server listening), then SERVING for good. */
export const STARTUP = 'startup';
/** SERVING only while the process can serve now (started, database reachable, migrations applied); NOT_SERVING for good once draining. `""` and each service's own name mean the same. */
export const READINESS = 'readiness';

/** What the health port answers the moment it is bound. */
const INITIAL_STATUS: Readonly<Record<string, ServingStatus>> = { [OVERALL]: 'NOT_SERVING', [LIVENESS]: 'SERVING', [STARTUP]: 'NOT_SERVING', [READINESS]: 'NOT_SERVING' };

/**
 * Serving status per service name, driven by real checks (start-up done, database reachable,
 * migrations applied). Shared by the mTLS port and the plaintext probe port.
 */
export class HealthState {
  readonly implementation = new HealthImplementation({ ...INITIAL_STATUS });
  private readonly statuses = new Map<string, ServingStatus>(Object.entries(INITIAL_STATUS));
  /** The names that mean readiness: the overall one, `readiness` and every service's. */
  private readonly readinessNames: string[] = [OVERALL, READINESS];
  private started = false;
  private ready = false;
  private draining = false;

  constructor(services: readonly string[] = []) {
    this.addServices(services);
  }

  private set(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    this.implementation.setStatus(service, status);
  }

  /** Readiness as probes see it: only after start-up, and never again once draining. */
  private get readiness(): ServingStatus {
    return this.started && this.ready && !this.draining ? 'SERVING' : 'NOT_SERVING';
  }

  private publishReadiness(): void {
    for (const s of this.readinessNames) this.set(s, this.readiness);
  }

  /** Adds service names (a process's gRPC services, known once their modules exist) that report readiness. */
  addServices(services: readonly string[]): void {
    for (const s of services) {
      if (this.readinessNames.includes(s)) continue;
      if (s === LIVENESS || s === STARTUP) throw new Error(`"${s}" is a probe's health name, not a service name`);
      this.readinessNames.push(s);
    }
    this.publishReadiness();
  }

  /** Start-up is done: `startup` turns SERVING for good, and readiness may follow. */
  markStarted(): void {
    this.started = true;
    this.set(STARTUP, 'SERVING');
    this.publishReadiness();
  }

  /** The outcome of a readiness check (database reachable, migrations applied); ignored once draining. */
  setReady(ready: boolean): void {
    this.ready = ready;
    this.publishReadiness();
  }

  /** On shutdown: readiness NOT_SERVING for good, so load balancers stop sending new calls; liveness stays SERVING. */
  /** True once drain() was called: readiness stays NOT_SERVING until the process exits. */
  get isDraining(): boolean {
    return this.draining;
  }

  drain(): void {
    this.draining = true;
    this.publishReadiness();
  }

  status(service = OVERALL): ServingStatus {
    return this.statuses.get(service) ?? 'UNKNOWN';
  }

  /**
   * grpc.health.v1 Check alone (Watch and List answer UNIMPLEMENTED): what kubelet's probes call.
   * For the plaintext probe port, which anyone who reaches it can call: a Watch there would be a
   * stream held open for free.
   */
  addCheckTo(server: Server): void {
    const definition = { Check: (healthService as unknown as ServiceDefinition).Check } as ServiceDefinition;
    server.addService(definition, {
      Check: (call: ServerUnaryCall<{ service: string }, unknown>, callback: sendUnaryData<unknown>) => {
        const name = call.request.service;
        const known = this.statuses.get(name);
        if (known) callback(null, { status: known });
        else callback({ code: GrpcStatus.NOT_FOUND, details: `Health status unknown for service ${name}` });
      },
    });
  }
}

/** Largest health request the probe port reads, and the calls one connection may have open. */
const PROBE_SERVER_OPTIONS = { 'grpc.max_receive_message_length': 4096, 'grpc.max_concurrent_streams': 16 };

/**
 * grpc.health.v1 Check alone on a plaintext port: kubelet's gRPC probes cannot do TLS. Every
 * process binds it first, before its database and its mTLS port, so liveness answers during
 * start-up. The same port answers HTTP/1.1 GETs (probe-port.ts): `/livez` and `/readyz` for
 * `httpGet` probes and load balancers, and the routes added later (`/metrics`).
 */
export async function startHealthServer(host: string, port: number, health: HealthState): Promise<ProbePort> {
  const server = new Server(PROBE_SERVER_OPTIONS);
  health.addCheckTo(server);
  // The gRPC side listens on loopback only; the probe port passes HTTP/2 connections to it.
  const grpcPort = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  let probe: ProbePort;
  try {
    probe = await startProbePort(host, port, grpcPort);
  } catch (err) {
    server.forceShutdown();
    throw err;
  }
  const answer = (name: string): ProbeRoute => (_req, res) => {
    const status = health.status(name);
    res.writeHead(status === 'SERVING' ? 200 : 503, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end(`${status}\n`);
  };
  probe.routes.set('/livez', answer(LIVENESS));
  probe.routes.set('/readyz', answer(READINESS));
  probe.routes.set('/startupz', answer(STARTUP));
  return {
    ...probe,
    close() {
      probe.close();
      server.forceShutdown();
    },
  };
}
