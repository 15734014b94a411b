import {
  defineModule,
  certificateIdentity,
  mtlsChannelCredentials,
  OutboxRelay,
  peerAddressOf,
  peerChannelOptions,
  type RelaySink,
  type Serving,
  type StartContext,
} from '@gantry/kit';
import { auditPartition, logSink } from '@gantry/log';
import { logv1, webhooksv1 } from '@gantry/proto';
import { webhooksSink } from '@gantry/webhooks';

/** The scopes a module's relay needs from its peers: granted to the workload identity of every target that runs the relay. */
export const RELAY_SCOPES = ['log.append', 'webhooks.publish'] as const;

/** Where a peer target is called: the configured address, else this process when it runs the target. */
function peerAddresses(ctx: StartContext, serving: Serving): Record<'log' | 'webhooks', string | undefined> {
  const host = ctx.config.listen.host === '0.0.0.0' || ctx.config.listen.host === '::' ? '127.0.0.1' : ctx.config.listen.host;
  const self = `${host.includes(':') ? `[${host}]` : host}:${serving.port}`;
  const addressOf = (peer: 'log' | 'webhooks') => peerAddressOf(ctx.config, peer) ?? (serving.targets.includes(peer) ? self : undefined);
  const addresses = { log: addressOf('log'), webhooks: addressOf('webhooks') };
  for (const peer of ['log', 'webhooks'] as const) {
    if (!addresses[peer]) {
      ctx.log.warn({ peer }, `no address for ${peer} (GANTRY_PEERS_${peer.toUpperCase()}_ADDRESS) and this process does not run it: events wait in the outbox until one is configured`);
    }
  }
  return addresses;
}

/**
 * Starts one outbox relay per module that emits events, sending to the log (the module's audit
 * partition) and to webhooks: in this process when it runs them, else at the configured addresses.
 */
async function startRelays(ctx: StartContext) {
  const serving = ctx.serving;
  if (!serving || serving.emitters.length === 0) return undefined;
  const { config, log } = ctx;
  // As this process's workload, by its certificate: only the owning workload may write a family's
  // audit partition and publish its events, so the relays never present a token.
  const tokens = certificateIdentity;
  const addresses = peerAddresses(ctx, serving);
  const creds = await mtlsChannelCredentials(serving.tls);
  const options = peerChannelOptions(config.peers.serverName);
  const logClient = addresses.log ? new logv1.LogServiceClient(addresses.log, creds, options) : undefined;
  const webhooksClient = addresses.webhooks ? new webhooksv1.WebhooksServiceClient(addresses.webhooks, creds, options) : undefined;
  const relays = serving.emitters.map(({ name, outbox }) => {
    const sinks: RelaySink[] = [];
    if (logClient) sinks.push(logSink(logClient, auditPartition(name), tokens, config.peers.callTimeoutMs));
    if (webhooksClient) sinks.push(webhooksSink(webhooksClient, tokens, config.peers.callTimeoutMs));
    const relay = new OutboxRelay({ db: serving.db, schema: outbox.schema, sinks, log: log.child({ component: 'outbox-relay', target: name }), ...config.events });
    outbox.onCommitted(() => relay.wake());
    relay.start();
    return relay;
  });
  return {
    async stop() {
      // Events committed by calls still draining wait in the outbox for the next start (or another replica).
      await Promise.all(relays.map((r) => r.stop()));
      logClient?.close();
      webhooksClient?.close();
    },
  };
}

/**
 * The event relay: modules that emit domain events depend on it. It starts once the process
 * serves, after every module's services, and stops first, before calls drain.
 */
export const eventsModule = defineModule({
  name: 'events',
  calls: RELAY_SCOPES,
  start: startRelays,
});
