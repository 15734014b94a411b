import { flagsScopes, type ScopeTable, type ServiceFactory } from '@gantry/kit';
import { approvalsService } from '@gantry/approvals';
import { APPROVALS_ADMIN_SCOPE, approvalsScopes } from '@gantry/approvals/scopes';
import { logService } from '@gantry/log';
import { logScopes } from '@gantry/log/scopes';
import { settlementService } from '@gantry/settlement';
import { settlementScopes } from '@gantry/settlement/scopes';
import { webhooksService } from '@gantry/webhooks';
import { WEBHOOKS_ADMIN_SCOPE, webhooksScopes } from '@gantry/webhooks/scopes';

/** Every target one `gantry` program can run; `all` is the monolith of the service targets. */
export const SERVICE_TARGETS: Record<string, ServiceFactory> = {
  log: logService,
  settlement: settlementService,
  approvals: approvalsService,
  webhooks: webhooksService,
};

/** `operator` reconciles Kubernetes resources into the services; it has no service module of its own. */
export const TARGETS = [...Object.keys(SERVICE_TARGETS), 'all', 'operator'] as const;

/** The service factories a `--target` value selects. */
export function servicesFor(target: string): ServiceFactory[] {
  if (target === 'all') return Object.values(SERVICE_TARGETS);
  const factory = SERVICE_TARGETS[target];
  if (!factory) throw new Error(`unknown target "${target}"; choose one of: ${TARGETS.join(', ')}`);
  return [factory];
}

/** Every scope any RPC declares, for `gantry token --all-scopes`. */
export function allScopes(): string[] {
  const tables: ScopeTable<Record<string, unknown>>[] = [logScopes, settlementScopes, approvalsScopes, webhooksScopes, flagsScopes];
  // Scopes a handler checks beyond its method's own (acting for someone else).
  const extra = [APPROVALS_ADMIN_SCOPE, WEBHOOKS_ADMIN_SCOPE];
  return [...new Set([...tables.flatMap((t) => Object.values(t).flat()), ...extra])].sort();
}
