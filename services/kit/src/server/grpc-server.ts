import { Server, type ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js';
import type { Principal } from '../auth/jwt.js';
import type { CallCredentials } from '../auth/middleware.js';
import type { GantryConfig } from '../config.js';
import { GantryError, Status } from '../errors.js';
import type { HealthState } from '../health/health.js';
import type { Logger } from '../logger.js';
import type { Middleware } from '../rpc/context.js';
import { assertStrictlyDecodable, strictDeserializer, type DecodableMethod } from '../rpc/decode.js';
import { bindService, methodInfo, requestLimitOf, type CallTracker, type ServiceModule, type TrackedCall } from '../rpc/service.js';
import { admissionInterceptor, type MethodAdmission } from './admission.js';
import { addReflection } from './reflection.js';

export interface GrpcServerOptions {
  modules: readonly ServiceModule[];
  /** Applied to every service method, first = outermost. Health and reflection bypass them. */
  middlewares: readonly Middleware[];
  credentials: ServerCredentials;
  host: string;
  port: number;
  limits: GantryConfig['limits'];
  /**
   * Decides each call of a service method on its metadata, before its body is read (the runtime's
   * Authenticator); the auth middleware replays the decision.
   */
  authorize: (call: CallCredentials) => Principal | Promise<Principal>;
  health: HealthState;
  /** FileDescriptorSets (buf build output) for gRPC reflection, so grpcurl needs no .proto files. */
  descriptorSetPaths?: readonly string[];
  log: Logger;
}

/** Counts in-flight calls and can abort them all, for draining. */
class InFlight implements CallTracker {
  private readonly calls = new Set<TrackedCall>();
  private readonly drainController = new AbortController();
  readonly draining = this.drainController.signal;

  startDraining(): void {
    this.drainController.abort();
  }
  private idleWaiters: (() => void)[] = [];

  begin(call: TrackedCall): void {
    this.calls.add(call);
  }

  end(call: TrackedCall): void {
    this.calls.delete(call);
    if (this.calls.size === 0 && this.idleWaiters.length > 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  get size(): number {
    return this.calls.size;
  }

  idle(): Promise<void> {
    return this.calls.size === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  abortAll(reason: unknown): void {
    for (const c of this.calls) c.abort(reason);
  }
}

function bindAsync(server: Server, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))));
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** grpc-js's value for "never" (its UNLIMITED_CONNECTION_AGE_MS); our config says 0. */
const GRPC_UNLIMITED_MS = 2 ** 31 - 1;

/**
 * grpc-js server options for the connection age. After `maxConnectionAgeMs` (grpc-js adds ±10%
 * jitter) the server sends a GOAWAY that lets open calls finish; after the grace it closes the
 * connection under those still open.
 */
function connectionAgeOptions(limits: Pick<GantryConfig['limits'], 'maxConnectionAgeMs' | 'maxConnectionAgeGraceMs'>): Record<string, number> {
  return {
    'grpc.max_connection_age_ms': limits.maxConnectionAgeMs || GRPC_UNLIMITED_MS,
    'grpc.max_connection_age_grace_ms': limits.maxConnectionAgeGraceMs || GRPC_UNLIMITED_MS,
  };
}

type Limits = GantryConfig['limits'];

/** A method's request limit under `limits`. */
const limitOf = (module: ServiceModule, key: string, limits: Limits) => requestLimitOf(module, key, { defaultBytes: limits.maxRequestBytes, capBytes: limits.maxReceiveMessageBytes });

/** Every service method's kind and request limit, by path, for admission. */
function methodAdmissions(modules: readonly ServiceModule[], limits: Limits): Map<string, MethodAdmission> {
  const methods = new Map<string, MethodAdmission>();
  for (const module of modules) {
    for (const [key, method] of Object.entries(module.definition)) {
      methods.set(method.path, { kind: methodInfo(method).kind, maxRequestBytes: limitOf(module, key, limits) });
    }
  }
  return methods;
}

/** `module`'s definition with strict request deserializers (rpc/decode.ts); fails when a method cannot have one. */
function strictDefinition(module: ServiceModule, limits: Limits): ServiceDefinition {
  const definition: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(module.definition)) {
    const decodable = method as unknown as DecodableMethod;
    assertStrictlyDecodable(decodable);
    definition[key] = { ...method, requestDeserialize: strictDeserializer(decodable, limitOf(module, key, limits)) };
  }
  return definition as unknown as ServiceDefinition;
}

/**
 * The gRPC server every target runs: service modules behind admission (server/admission.ts) and
 * the middleware chain on the mTLS port, grpc.health.v1 and reflection beside them, strict request
 * decoding, per-method message limits, stream and call bounds, keepalive, a maximum
 * connection age, and a graceful drain on shutdown. The plaintext probe port is the runtime's: it
 * is bound before start-up (startHealthServer).
 */
export class GrpcServer {
  private readonly server: Server;
  private readonly inFlight = new InFlight();
  private shuttingDown: Promise<void> | undefined;
  port = 0;

  constructor(private readonly opts: GrpcServerOptions) {
    const { limits } = opts;
    const admission = admissionInterceptor({
      methods: methodAdmissions(opts.modules, limits),
      defaultRequestBytes: Math.min(limits.maxRequestBytes, limits.maxReceiveMessageBytes),
      authorize: opts.authorize,
      maxCallsPerPrincipal: limits.maxCallsPerPrincipal,
      maxRequestBytesInFlight: limits.maxRequestBytesInFlight,
      maxReceiveMessageBytes: limits.maxReceiveMessageBytes,
      log: opts.log,
    });
    this.server = new Server({
      // The server-wide ceiling; admission narrows it per method (ServiceModule.maxRequestBytes).
      'grpc.max_receive_message_length': limits.maxReceiveMessageBytes,
      'grpc.max_send_message_length': limits.maxSendMessageBytes,
      'grpc.max_concurrent_streams': limits.maxConcurrentStreams,
      // The only interceptor, so it is handed grpc-js's own call (admission.ts, takeOverDecoder).
      interceptors: [admission],
      'grpc.keepalive_time_ms': limits.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': limits.keepaliveTimeoutMs,
      'grpc.keepalive_permit_without_calls': 1,
      // A round_robin client over a headless Service re-resolves only when one of its connections
      // ends: aged-out connections make it find the pods added since (scale-up, rollout).
      ...connectionAgeOptions(limits),
    });
    for (const module of opts.modules) {
      this.server.addService(strictDefinition(module, limits), bindService(module, { middlewares: opts.middlewares, log: opts.log, tracker: this.inFlight }));
    }
    opts.health.implementation.addToServer(this.server);
    if (opts.descriptorSetPaths) addReflection(this.server, opts.descriptorSetPaths, opts.modules.map((m) => m.name));
  }

  /** Binds the mTLS port; resolves with the port actually bound (0 in the config = any free port). */
  async start(): Promise<{ port: number }> {
    this.port = await bindAsync(this.server, hostPort(this.opts.host, this.opts.port), this.opts.credentials);
    return { port: this.port };
  }

  /** Calls running right now. */
  get inFlightCalls(): number {
    return this.inFlight.size;
  }

  /**
   * Drains: readiness turns NOT_SERVING (liveness stays SERVING), no new calls are accepted,
   * in-flight calls and streams get `graceMs` to finish, then the rest are cancelled with
   * UNAVAILABLE (clients retry elsewhere).
   */
  shutdown(graceMs = this.opts.limits.shutdownGraceMs): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.opts.health.drain();
      this.inFlight.startDraining();
      const stopped = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
      const pending = this.inFlight.size;
      if (pending > 0) this.opts.log.info({ in_flight: pending, grace_ms: graceMs }, 'draining in-flight calls');
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), graceMs)));
      const outcome = await Promise.race([this.inFlight.idle().then(() => 'idle' as const), deadline]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        this.opts.log.warn({ in_flight: this.inFlight.size }, 'grace period over; cancelling remaining calls');
        this.inFlight.abortAll(new GantryError(Status.UNAVAILABLE, 'server is shutting down; retry on another replica'));
        await Promise.race([this.inFlight.idle(), new Promise((r) => setTimeout(r, 1000))]);
        this.server.forceShutdown();
      }
      await Promise.race([stopped, new Promise((r) => setTimeout(r, 1000))]);
      this.server.forceShutdown();
    })();
    return this.shuttingDown;
  }
}
