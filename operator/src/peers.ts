// The operator's gRPC clients: the webhooks service (endpoint registrations) and every service's
// FlagsService. Calls go over mTLS with the operator's own certificate and a service token.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  bearerMetadata,
  ConfigError,
  certificateIdentity,
  fileTokenSource,
  mtlsChannelCredentials,
  peerChannelOptions,
  peerAddressOf,
  unary,
  type GantryConfig,
  type ServiceTokenSource,
  type TlsFiles,
  type UnaryMethod,
} from '@gantry/kit';
import { flagsv1, webhooksv1 } from '@gantry/proto';
import { FLAG_TARGETS, type FlagTarget } from './resources.js';

/**
 * What the operator's token must carry. The event read scopes let a Webhook's endpoint subscribe to
 * the platform's domain events: creating a Webhook in the operator's namespace is a grant of that
 * feed, so only those who may read it should hold RBAC on webhooks.gantry.dev there
 * (docs/security.md, Webhooks). An auth.workloads grant for `operator` without them limits Webhook
 * endpoints to events their owner (the operator) publishes.
 */
export const OPERATOR_SCOPES = ['webhooks.read', 'webhooks.manage', 'events.settlement.read', 'events.approvals.read', 'flags.read', 'flags.write'] as const;

/** A gRPC client whose unary methods are called as promises with the token and deadline filled in. */
export interface Peer<C> {
  address: string;
  /** Calls a unary method; an abort of `signal` (the reconcile's) cancels the call, which then fails CANCELLED. */
  call<Req, Res>(method: (c: C) => UnaryMethod<Req, Res>, req: Req, signal?: AbortSignal): Promise<Res>;
}

export interface Peers {
  /** Undefined when no address is configured: reconcilers report that in status. */
  webhooks: Peer<webhooksv1.WebhooksServiceClient> | undefined;
  flags(target: FlagTarget): Peer<flagsv1.FlagsServiceClient> | undefined;
  close(): void;
}

/** The operator calls as its workload, by its certificate; a token file, when configured, is presented instead. */
function tokenSource(config: GantryConfig): ServiceTokenSource {
  return config.peers.tokenFile ? fileTokenSource(resolve(config.peers.tokenFile)) : certificateIdentity;
}

/** The operator's TLS identity: the configured files, else the dev PKI's operator certificate (workload `operator`). */
export function operatorTls(config: GantryConfig): TlsFiles {
  if (config.tls.caFile && config.tls.certFile && config.tls.keyFile) {
    return { caFile: config.tls.caFile, certFile: config.tls.certFile, keyFile: config.tls.keyFile, reloadIntervalMs: config.tls.reloadIntervalMs };
  }
  const dir = resolve(config.dataDir, 'pki');
  const files = { caFile: resolve(dir, 'ca.crt'), certFile: resolve(dir, 'operator.crt'), keyFile: resolve(dir, 'operator.key') };
  if (!Object.values(files).every(existsSync)) {
    throw new ConfigError(`invalid config tls: the operator needs a client certificate; set GANTRY_TLS_CA_FILE, GANTRY_TLS_CERT_FILE and GANTRY_TLS_KEY_FILE (or, in dev, point GANTRY_DATA_DIR at the embedded gantry's data dir, whose dev PKI is then used)`);
  }
  return { ...files, reloadIntervalMs: config.tls.reloadIntervalMs };
}

/** Connects lazily (grpc-js channels connect on first call); one channel per distinct address. */
export async function connectPeers(config: GantryConfig, tls: TlsFiles = operatorTls(config)): Promise<Peers> {
  const tokens = tokenSource(config);
  tokens.token(); // a missing or empty token file is a start-up error, not a reconcile error
  const creds = await mtlsChannelCredentials(tls);
  const options = peerChannelOptions(config.peers.serverName);
  const closers: (() => void)[] = [];
  const cache = new Map<string, unknown>();

  function peer<C extends { close(): void }>(address: string | undefined, kind: string, make: (address: string) => C): Peer<C> | undefined {
    if (!address) return undefined;
    const cacheKey = `${kind} ${address}`;
    let client = cache.get(cacheKey) as C | undefined;
    if (!client) {
      client = make(address);
      cache.set(cacheKey, client);
      closers.push(() => client!.close());
    }
    const c = client;
    return {
      address,
      call: (method, req, signal) => unary(method(c), c, req, bearerMetadata(tokens.token()), config.peers.callTimeoutMs, signal),
    };
  }

  const addressOf = (target: FlagTarget) => peerAddressOf(config, target);
  const webhooks = peer(peerAddressOf(config, 'webhooks'), 'webhooks', (a) => new webhooksv1.WebhooksServiceClient(a, creds, options));
  const flags = new Map(FLAG_TARGETS.map((t) => [t, peer(addressOf(t), 'flags', (a) => new flagsv1.FlagsServiceClient(a, creds, options))]));
  return {
    webhooks,
    flags: (target) => flags.get(target),
    close: () => closers.forEach((close) => close()),
  };
}
