// A gateway server for the unit tests: the real route table and HTTPS edge with a dev PKI in a
// temporary folder, calling one log backend (or none) over plaintext, and an undici agent that
// trusts its certificate.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { Agent } from 'undici';
import { ensureDevPki, silentLogger } from '@gantry/kit';
import { descriptorSetPath } from '@gantry/proto';
import { Backends } from '../src/backends.js';
import { gatewayConfigSchema } from '../src/config.js';
import { buildRouteTable, loadRegistry } from '../src/routes.js';
import { startGatewayServer, type GatewayServer } from '../src/server.js';

export interface TestGateway {
  server: GatewayServer;
  agent: Agent;
  /** The dev CA that signed its certificate. */
  caFile: string;
  close(): Promise<void>;
}

/** Starts the gateway with `settings` (its config slice) in front of the log at `logAddress`. */
export async function startTestGateway(logAddress: string | undefined, settings: Record<string, unknown>): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-gateway-'));
  const { paths } = await ensureDevPki(join(dir, 'pki'));
  const backends = new Backends([{ target: 'log', service: 'gantry.log.v1.LogService', address: logAddress }], credentials.createInsecure(), {});
  const server = await startGatewayServer({
    table: buildRouteTable(loadRegistry(descriptorSetPath)),
    backends,
    settings: gatewayConfigSchema.parse({ port: 0, ...settings }),
    host: '127.0.0.1',
    tls: { certFile: paths.serverCertFile, keyFile: paths.serverKeyFile, reloadIntervalMs: 60_000 },
    maxStreamsPerConnection: 10,
    openapi: '{}',
    log: silentLogger(),
  });
  const agent = new Agent({ connect: { ca: readFileSync(paths.caFile) } });
  return {
    server,
    agent,
    caFile: paths.caFile,
    async close() {
      await agent.close();
      await server.close(0);
      backends.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
