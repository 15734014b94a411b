import { relative, resolve } from 'node:path';
import { descriptorSetPath, healthDescriptorSetPath } from '@gantry/proto';
import { buildInfo, createLogger, startRuntime, type GantryConfig, type Runtime } from '@gantry/kit';
import { loadProgramConfig } from '../config.js';
import { modulesFor, WORKLOAD_GRANTS } from '../registry.js';
import { exitOnSignals } from '../shutdown.js';

export interface ServeOptions {
  target: string;
  config?: string;
  devIssuer?: boolean;
}

/** `gantry serve`: runs the chosen target's modules until SIGTERM/SIGINT, then drains and exits 0. */
export async function serve(opts: ServeOptions): Promise<void> {
  const modules = modulesFor(opts.target);
  const config = loadProgramConfig({ file: opts.config, ...(opts.devIssuer ? { overrides: { auth: { devIssuer: true } } } : {}) });
  const log = createLogger({ level: config.telemetry.logLevel, name: `gantry-${opts.target}` });
  const runtime = await startRuntime({ config, modules, log, descriptorSetPaths: [descriptorSetPath, healthDescriptorSetPath], workloads: WORKLOAD_GRANTS });
  const serving = modules.filter((m) => m.create).map((m) => m.name);
  if (serving.length > 0) {
    log.info({ targets: serving, port: runtime.port, health_port: runtime.healthPort, engine: runtime.db.engine, ...buildInfo() }, 'gantry is serving');
    printWelcome(config, runtime, serving);
  }
  else {
    log.info({ target: opts.target, health_port: runtime.healthPort, ...buildInfo() }, `gantry ${opts.target} is running`);
    const lines = runtime.welcome();
    if (lines.length > 0) process.stderr.write(['', `Gantry ${opts.target} is running.`, ...lines, ''].join('\n'));
  }

  // A module that can no longer do its job (the operator lost its lease): a fresh process is the sure way back.
  runtime.failed.catch((err: unknown) => {
    log.error({ err }, 'a module failed; exiting so the process restarts');
    runtime.health.drain();
    process.exit(1);
  });
  exitOnSignals(log, 'shutting down: health NOT_SERVING, draining calls, stopping modules', { grace_ms: config.limits.shutdownGraceMs }, () => runtime.stop());
}

/** Where the platform listens and how to call it, for a person at a terminal. */
function printWelcome(config: GantryConfig, runtime: Runtime, targets: readonly string[]): void {
  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? 'localhost' : config.listen.host;
  const rel = (p: string) => relative(process.cwd(), resolve(p)) || p;
  const devAuth = config.auth.devIssuer && !config.auth.jwksFile && !config.auth.jwksUrl;
  process.stderr.write(
    [
      '',
      `Gantry is serving ${targets.join(', ')} (database: ${runtime.db.engine}).`,
      `  gRPC over mTLS   ${host}:${runtime.port}`,
      `  health probe     ${host}:${runtime.healthPort} (plaintext: grpc.health.v1, and GET /metrics /readyz /livez)`,
      ...runtime.welcome(),
      '',
      'Call it with grpcurl (reflection is on):',
      `  grpcurl -cacert ${rel(runtime.tls.caFile)} -cert ${rel(resolve(config.dataDir, 'pki/client.crt'))} -key ${rel(resolve(config.dataDir, 'pki/client.key'))} \\`,
      `    -H "authorization: Bearer $(npm run -s gantry -- token --all-scopes)" ${host}:${runtime.port} list`,
      devAuth ? `  (dev PKI and JWT key in ${rel(config.dataDir)}; gantry token --help for scoped tokens)` : '',
      '',
    ].join('\n'),
  );
}
