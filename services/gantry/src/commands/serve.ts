import { relative, resolve } from 'node:path';
import { descriptorSetPath, healthDescriptorSetPath } from '@gantry/proto';
import { createLogger, loadConfig, startRuntime } from '@gantry/kit';
import { servicesFor } from '../registry.js';
import { serveOperator } from './operator.js';

export interface ServeOptions {
  target: string;
  config?: string;
}

/** `gantry serve`: runs the chosen targets until SIGTERM/SIGINT, then drains and exits 0. */
export async function serve(opts: ServeOptions): Promise<void> {
  if (opts.target === 'operator') return serveOperator(opts);
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

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting for the drain');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, grace_ms: config.limits.shutdownGraceMs }, 'shutting down: health NOT_SERVING, draining calls');
    runtime.stop().then(
      () => {
        log.info('stopped cleanly');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
