import { ADMIN_SCOPE, flagsScopes, ModuleRegistry, scopesOf, type GantryModule } from '@gantry/kit';
import { approvalsService } from '@gantry/approvals';
import { gatewayModule } from '@gantry/gateway';
import { logService } from '@gantry/log';
import { operatorModule } from '@gantry/operator';
import { settlementService } from '@gantry/settlement';
import { webhooksService } from '@gantry/webhooks';
import { eventsModule } from './modules/events.js';

/** The targets `all` runs in one process (the monolith): the services, and the HTTP gateway in front of them. */
const ALL = ['log', 'settlement', 'approvals', 'webhooks', 'gateway'];

/**
 * Every module of the `gantry` program: the one place a new service is registered (its folder
 * holds the rest; the chart lists its target). `--target` names one of them.
 */
export const registry = new ModuleRegistry().register(
  eventsModule,
  logService,
  settlementService,
  approvalsService,
  webhooksService,
  gatewayModule,
  { name: 'all', dependencies: ALL },
  operatorModule,
);

/** What `--target` may be: every registered module but internal ones (the event relay comes with its dependents). */
export const TARGETS = registry.names().filter((name) => name !== 'events');

/**
 * What each target's workload identity (`spiffe://<trust domain>/<target>` in its certificate) may
 * do when it calls another: settlement and approvals relay their events (log.append,
 * webhooks.publish, each its own family), `all` both, the operator manages webhooks and flags.
 */
export const WORKLOAD_GRANTS = registry.workloadGrants(TARGETS);

/** The modules a `--target` value selects, dependencies first. */
export function modulesFor(target: string): GantryModule[] {
  if (!TARGETS.includes(target)) throw new Error(`unknown target "${target}"; choose one of: ${TARGETS.join(', ')}`);
  return registry.resolve([target]);
}

/** Every scope any RPC requires or handler checks, for `gantry token --all-scopes`: each module's, and the flags and admin services' (in every process). */
export function allScopes(): string[] {
  return [...new Set([...registry.scopes(), ...scopesOf([flagsScopes]), ADMIN_SCOPE])].sort();
}
