import { resolve } from 'node:path';
import { logv1, webhooksv1 } from '@gantry/proto';
import type { DevSigningKey } from '../auth/keys.js';
import { devTokenSource, fileTokenSource, type ServiceTokenSource } from '../auth/service-token.js';
import { peerChannelOptions } from '../client.js';
import { ConfigError, type GantryConfig } from '../config.js';
import type { Logger } from '../logger.js';
import type { Database } from '../storage/database.js';
import { mtlsChannelCredentials, type TlsFiles } from '../tls/credentials.js';
import type { Outbox } from './outbox.js';
import { OutboxRelay, type RelaySink } from './relay.js';
import { auditPartition, logSink, webhooksSink } from './sinks.js';

/** The scopes a service's relay needs from its peers. */
export const RELAY_SCOPES = ['log.append', 'webhooks.publish'] as const;

export interface RelayWiring {
  config: GantryConfig;
  db: Database;
  log: Logger;
  tls: TlsFiles;
  outboxes: readonly { target: string; outbox: Outbox }[];
  /** The dev signing key, when this process trusts it (embedded mode). */
  devKey: DevSigningKey | undefined;
  /** This process's gRPC port and targets: a peer target run here is called here. */
  port: number;
  targets: readonly string[];
}

function tokenSource(w: RelayWiring, subject: string): ServiceTokenSource {
  const { config } = w;
  if (config.peers.tokenFile) return fileTokenSource(resolve(config.peers.tokenFile));
  if (w.devKey) return devTokenSource({ key: w.devKey.privateKey, kid: w.devKey.kid, issuer: config.auth.issuer, audience: config.auth.audience, subject, scopes: RELAY_SCOPES });
  throw new ConfigError(
    `invalid config peers.tokenFile: events are relayed to log and webhooks with a service token, and this process trusts an external issuer; set GANTRY_PEERS_TOKEN_FILE to a JWT with scopes ${RELAY_SCOPES.join(' ')} (or set GANTRY_EVENTS_ENABLED=false)`,
  );
}

/**
 * Starts one relay per service that emits events, sending to the log and webhooks targets: in this
 * process when it runs them, else at the configured addresses. A peer with neither is skipped with a
 * warning: its events wait in the outbox until an address is configured.
 */
export async function startRelays(w: RelayWiring): Promise<{ stop(): Promise<void> }> {
  const { config, log } = w;
  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? '127.0.0.1' : config.listen.host;
  const self = `${host.includes(':') ? `[${host}]` : host}:${w.port}`;
  const addressOf = (peer: 'log' | 'webhooks') => config.peers[peer].address ?? (w.targets.includes(peer) ? self : undefined);
  for (const peer of ['log', 'webhooks'] as const) {
    if (!addressOf(peer)) {
      log.warn({ peer }, `no address for ${peer} (GANTRY_PEERS_${peer.toUpperCase()}_ADDRESS) and this process does not run it: events wait in the outbox until one is configured`);
    }
  }
  // Before anything starts, so a missing token is a start-up error rather than a silent backlog.
  const tokens = new Map(w.outboxes.map(({ target }) => [target, tokenSource(w, `service:${target}`)]));
  const creds = await mtlsChannelCredentials(w.tls);
  const options = peerChannelOptions(config.peers.serverName);
  const logAddress = addressOf('log');
  const webhooksAddress = addressOf('webhooks');
  const logClient = logAddress ? new logv1.LogServiceClient(logAddress, creds, options) : undefined;
  const webhooksClient = webhooksAddress ? new webhooksv1.WebhooksServiceClient(webhooksAddress, creds, options) : undefined;
  const relays = w.outboxes.map(({ target, outbox }) => {
    const sinks: RelaySink[] = [];
    if (logClient) sinks.push(logSink(logClient, auditPartition(target), tokens.get(target)!, config.peers.callTimeoutMs));
    if (webhooksClient) sinks.push(webhooksSink(webhooksClient, tokens.get(target)!, config.peers.callTimeoutMs));
    const relay = new OutboxRelay({ db: w.db, schema: outbox.schema, sinks, log: log.child({ component: 'outbox-relay', target }), ...config.events });
    outbox.onCommitted(() => relay.wake());
    relay.start();
    return relay;
  });
  return {
    async stop() {
      await Promise.all(relays.map((r) => r.stop()));
      logClient?.close();
      webhooksClient?.close();
    },
  };
}
