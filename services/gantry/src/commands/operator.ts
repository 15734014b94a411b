import { createLogger, HealthState, loadConfig, startHealthServer, startTelemetry } from '@gantry/kit';
import { startOperator } from '@gantry/operator';
import { exitOnSignals } from '../shutdown.js';

/** `gantry serve --target=operator`: reconciles Webhooks and FeatureFlags until SIGTERM/SIGINT. */
export async function serveOperator(opts: { config?: string }): Promise<void> {
  const config = loadConfig({ file: opts.config });
  const log = createLogger({ level: config.telemetry.logLevel, name: 'gantry-operator' });
  // Before the operator starts: its metrics (queue depth, reconciles, leadership) take meters now.
  const telemetry = await startTelemetry({ serviceName: 'gantry-operator', otlpEndpoint: config.telemetry.otlpEndpoint });
  const health = new HealthState(['gantry.operator']);
  // liveness SERVING from here on; startup once the operator runs; readiness once its caches are filled.
  const probe = await startHealthServer(config.listen.host, config.listen.healthPort, health);
  const operator = await startOperator({ config, log });
  health.markStarted();
  // A standby is ready too: it is ready to take over the moment the leader's lease runs out.
  operator.synced().then(
    () => health.setReady(true),
    (err: unknown) => log.error({ err }, 'informers did not sync'),
  );
  log.info({ namespace: operator.namespace, identity: operator.identity, health_port: probe.port }, 'gantry operator is running');
  operator.failed.catch(() => {
    // Lost the lease: a fresh process is the sure way to drop leader-only state and campaign again.
    health.drain();
    process.exit(1);
  });

  exitOnSignals(log, 'shutting down: finishing reconciles and releasing the lease', {}, async () => {
    health.drain();
    await operator.stop();
    probe.close();
    await telemetry.shutdown();
  });
}
