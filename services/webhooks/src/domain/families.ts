// Who may publish which events, and who receives them (docs/security.md, Webhooks). An event type's
// family is its first dot-separated word: `settlement.credit.drawn` is of the family `settlement`.
//
// - A platform family (the domain events of a platform service) is published only by the workload
//   that owns it, authenticated by its certificate (Principal.workload, never a token claim). Its
//   events have no owner and go to the endpoints entitled to the family, and to no other.
// - Every other event is its publisher's own: it goes only to its owner's endpoints. Acting for
//   another owner needs webhooks.admin, as everywhere in this API.
// - An endpoint is entitled to a platform family when whoever registered it (or last changed its
//   event types or URL) could read that family: the scope `events.<family>.read`, webhooks.admin
//   (every family), or being the workload that owns it. The entitlement is stored with the
//   endpoint, since a token's scopes exist only during its call.
//
// Pure: the API passes the caller; errors are returned as reasons, the API picks the status.

/** The families of the platform's event catalogue (docs/events.md): a service that starts emitting adds its family here. */
export const PLATFORM_FAMILIES: readonly string[] = ['settlement', 'approvals'];
/** The webhooks service's own events (webhook.endpoint.disabled, webhook.test): it alone writes them, each to one owner. */
export const SERVICE_FAMILY = 'webhook';
/** An endpoint entitled to every platform family (registered by webhooks.admin with event type "*"). */
export const EVERY_FAMILY = '*';
/** Families an endpoint is entitled to, at most (a bound on what a caller's scopes can add). */
export const MAX_ENDPOINT_FAMILIES = 64;

/** The scope that lets a caller subscribe its endpoints to a platform family's events. */
export const readScope = (family: string): string => `events.${family}.read`;
const READ_SCOPE = /^events\.([a-z][a-z0-9-]{0,62})\.read$/;

/** The read scopes of the platform families: the module declares them (gantry token --all-scopes). */
export const PLATFORM_READ_SCOPES: readonly string[] = PLATFORM_FAMILIES.map(readScope);

/** The caller of an RPC as these rules see it. */
export interface Caller {
  subject: string;
  scopes: ReadonlySet<string>;
  /** The event families of a platform workload authenticated by its certificate; empty for anyone else. */
  workloadFamilies: ReadonlySet<string>;
  /** Holds webhooks.admin. */
  admin: boolean;
}

/** The family of an event type: its first dot-separated word (the whole type when it has no dot). */
export function familyOf(eventType: string): string {
  const dot = eventType.indexOf('.');
  return dot === -1 ? eventType : eventType.slice(0, dot);
}

/** Families only their owner may publish: the platform's, and the service's own. */
export function isReservedFamily(family: string): boolean {
  return family === SERVICE_FAMILY || PLATFORM_FAMILIES.includes(family);
}

/** How a published event is addressed: a platform family's, or one owner's. */
export type PublishDecision =
  | { kind: 'platform'; family: string }
  | { kind: 'owned'; owner: string }
  | { kind: 'invalid'; reason: string }
  | { kind: 'denied'; reason: string };

/** Who may publish `eventType` as `caller`, for `requestedOwner` ('' = the caller, or the platform for its own family). */
export function publishDecision(caller: Caller, eventType: string, requestedOwner: string): PublishDecision {
  const family = familyOf(eventType);
  if (caller.workloadFamilies.has(family)) {
    if (requestedOwner !== '') return { kind: 'invalid', reason: `is ${JSON.stringify(requestedOwner)}, but ${family} events are the platform's: they go to every endpoint entitled to the family; leave owner empty` };
    return { kind: 'platform', family };
  }
  if (isReservedFamily(family)) {
    return { kind: 'denied', reason: `${eventType} is of the reserved event family ${family}: only the platform component that owns it publishes it, by its workload certificate; publish your own events under another prefix` };
  }
  const owner = requestedOwner === '' ? caller.subject : requestedOwner;
  if (owner !== caller.subject && !caller.admin) {
    return { kind: 'denied', reason: `${caller.subject} publishes only its own events (owner empty or ${JSON.stringify(caller.subject)}); publishing for ${owner} needs scope webhooks.admin` };
  }
  return { kind: 'owned', owner };
}

/** Whether `caller` may receive the platform events of `family`. */
export function entitledTo(caller: Caller, family: string): boolean {
  return caller.admin || caller.scopes.has(readScope(family)) || caller.workloadFamilies.has(family);
}

/** Every family `caller` may read: those of its read scopes and its workload, and the platform's it is entitled to. */
function readableFamilies(caller: Caller): string[] {
  const fromScopes = [...caller.scopes].map((s) => READ_SCOPE.exec(s)?.[1]).filter((f): f is string => f !== undefined);
  return [...PLATFORM_FAMILIES.filter((f) => entitledTo(caller, f)), ...fromScopes, ...caller.workloadFamilies];
}

/** The platform families an endpoint receives, or the event type its registrar may not subscribe to. */
export type Subscription = { families: string[] } | { deniedType: string; family: string };

/**
 * What an endpoint subscribed to `eventTypes` receives of the platform's events when `caller`
 * registers it: each named type of a platform family needs the caller's entitlement to it; "*"
 * takes in every family the caller is entitled to (every one, present and future, for an admin).
 */
export function subscriptionFamilies(caller: Caller, eventTypes: readonly string[]): Subscription {
  const families = new Set<string>();
  for (const type of eventTypes) {
    if (type === '*') continue;
    const family = familyOf(type);
    if (entitledTo(caller, family) && family !== SERVICE_FAMILY) families.add(family);
    else if (PLATFORM_FAMILIES.includes(family)) return { deniedType: type, family };
  }
  if (eventTypes.includes('*')) {
    if (caller.admin) return { families: [EVERY_FAMILY] };
    for (const f of readableFamilies(caller)) families.add(f);
  }
  return { families: [...families].sort().slice(0, MAX_ENDPOINT_FAMILIES) };
}

/** An endpoint as delivery sees it. */
export interface Recipient {
  owner: string;
  eventTypes: readonly string[];
  families: readonly string[];
}

/** An event as delivery sees it: a platform family's (family set, no owner) or an owner's (family ''). */
export interface Addressed {
  eventType: string;
  owner: string;
  family: string;
}

/** Whether an enabled endpoint receives the event (store/events.ts fanOut states the same in SQL). */
export function receives(endpoint: Recipient, event: Addressed): boolean {
  const subscribed = endpoint.eventTypes.includes(event.eventType) || endpoint.eventTypes.includes('*');
  if (!subscribed) return false;
  if (event.family === '') return endpoint.owner === event.owner;
  return endpoint.families.includes(event.family) || endpoint.families.includes(EVERY_FAMILY);
}
