import { defineModule, type StartContext } from '@gantry/kit';
import { operatorConfig, type OperatorConfig } from './config.js';
import { OPERATOR_SCOPES } from './peers.js';
import { startOperator, type OperatorProcessConfig } from './operator.js';

async function start(ctx: StartContext<OperatorConfig>) {
  const operator = await startOperator({ config: ctx.config as OperatorProcessConfig, log: ctx.log });
  // A standby is ready too: it is ready to take over the moment the leader's lease runs out.
  let synced = false;
  operator.synced().then(
    () => {
      synced = true;
      ctx.recheckReadiness();
    },
    (err: unknown) => ctx.log.error({ err }, 'informers did not sync'),
  );
  // Lost the lease: a fresh process is the sure way to drop leader-only state and campaign again.
  operator.failed.catch((err: unknown) => ctx.fail(err instanceof Error ? err : new Error(String(err))));
  ctx.log.info({ namespace: operator.namespace, identity: operator.identity }, 'gantry operator is running');
  return {
    ready: () => synced,
    // Graceful: in-flight reconciles finish, the lease is released, watches close.
    stop: () => operator.stop(),
  };
}

/** The operator target: reconciles Webhook and FeatureFlag resources into the services, behind Lease leader election. */
export const operatorModule = defineModule<OperatorConfig>({
  name: 'operator',
  config: operatorConfig,
  calls: OPERATOR_SCOPES,
  start,
});
