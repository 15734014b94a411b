import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { defineModule, ensureDevPki, mtlsChannelCredentials, peerAddressOf, peerChannelOptions, type GantryConfig, type StartContext, type TlsFiles } from '@gantry/kit';
import { descriptorSetPath, openapiPath } from '@gantry/proto';
import { Backends, PER_PROCESS_SERVICES, targetOfService, type BackendTarget } from './backends.js';
import { gatewayConfig, type GatewayConfig } from './config.js';
import { buildRouteTable, loadRegistry, type RouteTable } from './routes.js';
import { startGatewayServer } from './server.js';

/** The HTTPS certificate it serves with and the client certificate it calls the services with. */
interface GatewayTls {
  server: TlsFiles;
  client: TlsFiles;
}

/**
 * Configured TLS files serve both (the chart issues the gateway a certificate for
 * `spiffe://<trust domain>/gateway`). Without them, the dev PKI: its server certificate for HTTPS
 * and its `gateway` client certificate for calls, never the `all` certificate the embedded process
 * serves gRPC with, whose workload owns every event family.
 */
async function gatewayTls(ctx: StartContext<GatewayConfig>): Promise<GatewayTls> {
  const { config } = ctx;
  const reloadIntervalMs = config.tls.reloadIntervalMs;
  if (config.tls.caFile && config.tls.certFile && config.tls.keyFile) {
    const files = { caFile: config.tls.caFile, certFile: config.tls.certFile, keyFile: config.tls.keyFile, reloadIntervalMs };
    return { server: ctx.serving?.tls ?? files, client: files };
  }
  const { paths } = await ensureDevPki(resolve(config.dataDir, 'pki'));
  const server = ctx.serving?.tls ?? { caFile: paths.caFile, certFile: paths.serverCertFile, keyFile: paths.serverKeyFile, reloadIntervalMs };
  return { server, client: { caFile: paths.caFile, certFile: paths.gatewayCertFile, keyFile: paths.gatewayKeyFile, reloadIntervalMs } };
}

/** Each target's service and address: the configured one, else this process when it runs the target. */
function backendTargets(ctx: StartContext, table: RouteTable): BackendTarget[] {
  const host = ctx.config.listen.host === '0.0.0.0' || ctx.config.listen.host === '::' ? '127.0.0.1' : ctx.config.listen.host;
  const serving = ctx.serving;
  const self = serving && `${host.includes(':') ? `[${host}]` : host}:${serving.port}`;
  const services = [...new Set(table.methods.map((m) => m.parent.typeName))].filter((s) => !PER_PROCESS_SERVICES.has(s));
  return services.map((service) => {
    const target = targetOfService(service);
    const address = peerAddressOf(ctx.config, target) ?? (serving?.targets.includes(target) ? self : undefined);
    if (!address) ctx.log.warn({ target }, `the gateway has no address for ${target} (GANTRY_PEERS_${target.toUpperCase()}_ADDRESS): its routes answer 503`);
    return { target, service, address };
  });
}

/** The URL a person on this machine reaches the gateway at, and a first call. */
function welcomeLines(config: GantryConfig, port: number): string[] {
  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? 'localhost' : config.listen.host;
  const base = `https://${host}:${port}`;
  const ca = resolve(config.tls.caFile ?? resolve(config.dataDir, 'pki/ca.crt'));
  return [
    `  HTTP/JSON gateway ${base} (HTTP/1.1 and HTTP/2; routes: ${base}/openapi.json)`,
    `  curl --cacert ${ca} ${base}/health`,
    `  curl --cacert ${ca} -H "authorization: Bearer $(npm run -s gantry -- token --all-scopes)" ${base}/v1/log/partitions`,
  ];
}

async function start(ctx: StartContext<GatewayConfig>) {
  const table = buildRouteTable(loadRegistry(descriptorSetPath));
  const tls = await gatewayTls(ctx);
  const backends = new Backends(backendTargets(ctx, table), await mtlsChannelCredentials(tls.client), peerChannelOptions(ctx.config.peers.serverName));
  const server = await startGatewayServer({
    table,
    backends,
    settings: ctx.settings,
    host: ctx.config.listen.host,
    tls: tls.server,
    maxStreamsPerConnection: ctx.config.limits.maxConcurrentStreams,
    openapi: readFileSync(openapiPath, 'utf8'),
    log: ctx.log.child({ component: 'gateway' }),
  });
  ctx.log.info({ gateway_port: server.port, routes: table.routes.length }, 'HTTP gateway listening');
  return {
    port: server.port,
    welcome: () => welcomeLines(ctx.config, server.port),
    async stop(graceMs?: number) {
      await server.close(graceMs ?? ctx.config.limits.shutdownGraceMs);
      backends.close();
    },
  };
}

/**
 * The HTTP/JSON gateway target: REST routes from the protos' google.api.http options, each call
 * made over mTLS as the workload `gateway` with the caller's bearer token. It needs no scopes of
 * its own (no `calls`): every call is authorized by its caller's token, as if made over gRPC.
 */
export const gatewayModule = defineModule<GatewayConfig>({
  name: 'gateway',
  config: gatewayConfig,
  start,
});
