// Gantry's generated contracts, one namespace per protobuf package.
// Regenerate with `npm run proto:gen` after editing proto/gantry/**.
import { fileURLToPath } from 'node:url';

export * as logv1 from './gen/gantry/log/v1/log.js';
export * as settlementv1 from './gen/gantry/settlement/v1/settlement.js';
export * as approvalsv1 from './gen/gantry/approvals/v1/approvals.js';
export * as webhooksv1 from './gen/gantry/webhooks/v1/webhooks.js';
export * as flagsv1 from './gen/gantry/flags/v1/flags.js';
export * as eventsv1 from './gen/gantry/events/v1/events.js';
export * as adminv1 from './gen/gantry/admin/v1/admin.js';

/** Absolute path of the FileDescriptorSet (with imports) that gRPC reflection serves. */
export const descriptorSetPath: string = fileURLToPath(new URL('./gen/gantry.binpb', import.meta.url));

/** Absolute path of the HTTP gateway's OpenAPI document, generated from the descriptor set by proto-gen. */
export const openapiPath: string = fileURLToPath(new URL('./gen/openapi.json', import.meta.url));

/** The same for grpc.health.v1 (built from grpc-health-check's health.proto). */
export const healthDescriptorSetPath: string = fileURLToPath(new URL('./gen/health.binpb', import.meta.url));

/** Fully qualified names of every Gantry gRPC service. */
export const serviceNames = [
  'gantry.log.v1.LogService',
  'gantry.settlement.v1.SettlementService',
  'gantry.approvals.v1.ApprovalsService',
  'gantry.webhooks.v1.WebhooksService',
  'gantry.flags.v1.FlagsService',
  'gantry.admin.v1.AdminService',
] as const;

/** One of {@link serviceNames}. */
export type ServiceName = (typeof serviceNames)[number];
