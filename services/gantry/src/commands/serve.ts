import { relative, resolve } from 'node:path';
import { descriptorSetPath, healthDescriptorSetPath } from '@gantry/proto';
import { createLogger, loadConfig, startRuntime } from '@gantry/kit';
import { servicesFor } from '../registry.js';
import { exitOnSignals } from '../shutdown.js';

export interface ServeOptions {
  target: string;
  config?: string;
}

/** `gantry serve`: runs the chosen targets until SIGTERM/SIGINT, then drains and exits 0. */
export async function serve(opts: ServeOptions): Promise<void> {
  // Loaded only for this target: the Kubernetes client is a large import every other command would pay for.
  if (opts.target === 'operator') return (await import('./operator.js')).serveOperator(opts);
  const services = servicesFor(opts.target);
  const config = loadConfig({ file: opts.config });
  const log = createLogger({ level: config.telemetry.logLevel, name: `gantry-${opts.target}` });
  const runtime = await startRuntime({ config, services, log, descriptorSetPaths: [descriptorSetPath, healthDescriptorSetPath] });

  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? 'localhost' : config.listen.host;
  const rel = (p: string) => relative(process.cwd(), resolve(p)) || p;
  log.info({ targets: services.map((s) => s.target), port: runtime.port, health_port: runtime.healthPort, engine: runtime.db.engine }, 'gantry is serving');
  const devAuth = !config.auth.jwksFile && !config.auth.jwksUrl && !config.auth.hmacSecretFile;
  process.stderr.write(
    [
      '',
      `Gantry is serving ${services.map((s) => s.target).join(', ')} (database: ${runtime.db.engine}).`,
      `  gRPC over mTLS   ${host}:${runtime.port}`,
      `  health probe     ${host}:${runtime.healthPort} (plaintext, grpc.health.v1 only)`,
      '',
      'Call it with grpcurl (reflection is on):',
      `  grpcurl -cacert ${rel(runtime.tls.caFile)} -cert ${rel(resolve(config.dataDir, 'pki/client.crt'))} -key ${rel(resolve(config.dataDir, 'pki/client.key'))} \\`,
      `    -H "authorization: Bearer $(npm run -s gantry -- token --all-scopes)" ${host}:${runtime.port} list`,
      devAuth ? `  (dev PKI and JWT key in ${rel(config.dataDir)}; gantry token --help for scoped tokens)` : '',
      '',
    ].join('\n'),
  );

  exitOnSignals(log, 'shutting down: health NOT_SERVING, draining calls', { grace_ms: config.limits.shutdownGraceMs }, () => runtime.stop());
}
