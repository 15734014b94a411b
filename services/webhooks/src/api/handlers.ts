import { randomUUID } from 'node:crypto';
import type { LookupAddress } from 'node:dns';
import { GantryError, Status, checkTimestamp, durationToMs, failedPrecondition, invalidArgument, notFound, permissionDenied, type HandlerContext, type Handlers } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import { familyOf, isReservedFamily, readScope, subscriptionFamilies, type Caller } from '../domain/families.js';
import { LIMITS } from '../domain/limits.js';
import type { SealedSecret, SecretBox } from '../domain/secret-box.js';
import { generateSecret } from '../domain/signature.js';
import { applyMask, type Spec, type WebhookRecord } from '../domain/webhook.js';
import { addressesOf, type Resolver } from '../delivery/http.js';
import { aadFor, headersAadFor } from '../delivery/dispatcher.js';
import { targetOf, type AddressGuard } from '../domain/address-guard.js';
import type { WebhooksStore } from '../store/webhooks-store.js';
import { WEBHOOKS_ADMIN_SCOPE } from './scopes.js';
import { deliveryStatusFilter, statusFilter, toDelivery, toWebhook } from './convert.js';
import {
  checkEventType,
  checkId,
  checkMask,
  checkPageSize,
  checkPayload,
  checkSecret,
  checkSpec,
  checkText,
  pageTokens,
} from './validation.js';
import type { WebhooksStreams } from './streams.js';
import { checkBatch, checkEvent, eventDigest, publishEvents } from './publish.js';
import type { SpecChange } from '../store/registry.js';

export interface WebhooksDeps {
  store: WebhooksStore;
  box: SecretBox;
  guard: AddressGuard;
  resolver: Resolver;
  now: () => number;
  /** Attempts a new (or replayed) delivery gets. */
  maxAttempts: () => number;
  /** Tells this process's dispatcher that deliveries are due; `created` of them are new (publishes and test events, counted in metrics). */
  queued: (created?: number) => void;
  streams: WebhooksStreams;
}

/** The type of TriggerWebhook's test event unless the caller names one. */
const TEST_EVENT_TYPE = 'webhook.test';

/** PostgreSQL's unique-violation code: a create raced another with the same external_id. */
const UNIQUE_VIOLATION = '23505';

const isAdmin = (ctx: HandlerContext) => ctx.principal.scopes.has(WEBHOOKS_ADMIN_SCOPE);

/** The caller as the publishing and entitlement rules see it (domain/families.ts). */
function callerOf(ctx: HandlerContext): Caller {
  const p = ctx.principal;
  return { subject: p.subject, scopes: p.scopes, workloadFamilies: p.workload?.families ?? new Set(), admin: isAdmin(ctx) };
}

/** The platform families an endpoint subscribed to `eventTypes` receives when the caller registers it; PERMISSION_DENIED for a family it may not read. */
function entitlements(ctx: HandlerContext, eventTypes: readonly string[]): string[] {
  const sub = subscriptionFamilies(callerOf(ctx), eventTypes);
  if ('deniedType' in sub) {
    throw permissionDenied(`spec.event_types: ${sub.deniedType} is a ${sub.family} event, the platform's; subscribing to it needs scope ${readScope(sub.family)} (or ${WEBHOOKS_ADMIN_SCOPE})`);
  }
  return sub.families;
}

/** The owner a call acts for: the caller, or another owner with the admin scope. */
function ownerFor(ctx: HandlerContext, requested: string): string {
  const caller = ctx.principal.subject;
  if (requested === '' || requested === caller) return caller;
  checkText('owner', requested, LIMITS.maxOwnerChars);
  if (!isAdmin(ctx)) throw permissionDenied(`${caller} may act only on its own webhooks; acting for ${requested} needs scope ${WEBHOOKS_ADMIN_SCOPE}`);
  return requested;
}

function assertAccess(ctx: HandlerContext, w: WebhookRecord): void {
  const caller = ctx.principal.subject;
  if (w.owner !== caller && !isAdmin(ctx)) throw permissionDenied(`webhook ${w.id} belongs to another owner; reading or changing it needs scope ${WEBHOOKS_ADMIN_SCOPE}`);
}

type WebhooksHandlers = Partial<Handlers<typeof webhooksv1.WebhooksServiceService>>;

/** The service's handlers, one group per concern. */
export function webhooksHandlers(deps: WebhooksDeps): WebhooksHandlers {
  return { ...registryHandlers(deps), ...registryChangeHandlers(deps), ...publishHandlers(deps), ...deliveryHandlers(deps), ...observationHandlers(deps) };
}

/** The webhook, if it exists, is not deleted and the caller may see it. */
async function visible(deps: WebhooksDeps, ctx: HandlerContext, id: string, field = 'webhook_id'): Promise<WebhookRecord> {
  checkId(field, id);
  const w = await deps.store.registry.webhook(id);
  if (!w || w.state === 'DELETED') throw notFound(`webhook ${id} does not exist`);
  assertAccess(ctx, w);
  return w;
}

/** A webhook whose history the caller may read: deleted ones too (their deliveries stay readable). */
async function historyWebhookRecord(deps: WebhooksDeps, ctx: HandlerContext, id: string): Promise<WebhookRecord> {
  checkId('webhook_id', id);
  const w = await deps.store.registry.webhook(id);
  if (!w) throw notFound(`webhook ${id} does not exist`);
  assertAccess(ctx, w);
  return w;
}

async function historyWebhook(deps: WebhooksDeps, ctx: HandlerContext, id: string): Promise<string> {
  return (await historyWebhookRecord(deps, ctx, id)).id;
}

/** The addresses a registration's host has now, or undefined when it does not resolve within the bound. */
async function addressesNow(deps: WebhooksDeps, hostname: string): Promise<LookupAddress[] | undefined> {
  const lookup = addressesOf(deps.resolver, hostname);
  lookup.catch(() => undefined);
  const timeout = new Promise<undefined>((r) => setTimeout(() => r(undefined), LIMITS.registrationLookupMs).unref());
  try {
    return await Promise.race([lookup, timeout]);
  } catch {
    return undefined;
  }
}

/**
 * Refuses a URL for an endpoint of `owner` whose host is, or resolves to, an address deliveries
 * may not reach (domain/address-guard.ts): INVALID_ARGUMENT; PERMISSION_DENIED when only an
 * administrator's approval would open it. Returns whether the caller (an admin or a platform
 * workload) approved an internal target. A name that does not resolve yet (a receiver whose
 * Service is created after its Webhook, as the operator's often are) is accepted, approved when the
 * caller may approve internal targets: delivery checks the address again against the allow-list, and
 * that check is the one that counts.
 */
async function checkTarget(deps: WebhooksDeps, ctx: HandlerContext, field: string, url: string, owner: string): Promise<boolean> {
  const parsed = new URL(url);
  const target = targetOf(parsed);
  const approver = isAdmin(ctx) || ctx.principal.workload !== undefined;
  const addresses = await addressesNow(deps, parsed.hostname);
  if (!addresses) return approver;
  const own = deps.guard.allowance({ owner, internalApproved: false });
  const approvable = deps.guard.allowance({ owner, internalApproved: true });
  let approved = false;
  for (const { address } of addresses) {
    const why = deps.guard.refusal(address, target, own);
    if (!why) continue;
    if (deps.guard.refusal(address, target, approvable) !== undefined) throw invalidArgument(field, `refused address: ${parsed.hostname} resolves to ${why}`);
    if (!approver) {
      throw permissionDenied(`${field}: ${parsed.hostname} is an internal target that only an administrator may register (needs scope ${WEBHOOKS_ADMIN_SCOPE}), or allow-list it for ${owner} in webhooks.allowedCidrs (<owner>=<cidr>)`);
    }
    approved = true;
  }
  return approved;
}

/** Sealed header values, or null without headers. */
function sealHeaders(deps: WebhooksDeps, webhookId: string, headers: Record<string, string>): SealedSecret | null {
  return Object.keys(headers).length === 0 ? null : deps.box.seal(JSON.stringify(headers), headersAadFor(webhookId));
}

const seal = (deps: WebhooksDeps, webhookId: string, secret: string) => deps.box.seal(secret, aadFor(webhookId));

/** Creating and reading webhooks. */
function registryHandlers(deps: WebhooksDeps): WebhooksHandlers {
  const { store } = deps;
  return {
    async createWebhook(req, ctx) {
      const owner = ownerFor(ctx, req.owner);
      const externalId = checkText('external_id', req.externalId, LIMITS.maxExternalIdChars);
      const spec = checkSpec(req.spec);
      const given = checkSecret('secret', req.secret);
      const families = entitlements(ctx, spec.eventTypes);
      const internalApproved = await checkTarget(deps, ctx, 'spec.url', spec.url, owner);
      const secret = given || generateSecret();
      const id = `wh_${randomUUID().replaceAll('-', '')}`;
      const at = new Date(deps.now());
      for (let round = 0; ; round++) {
        try {
          return await store.transaction(async (tx) => {
            if (externalId !== '') {
              const existing = await tx.registry.byExternalId(owner, externalId);
              if (existing) return { webhook: toWebhook(existing), secret: '', created: false };
            }
            if ((await tx.registry.countOwned(owner)) >= LIMITS.maxWebhooksPerOwner) {
              throw new GantryError(Status.RESOURCE_EXHAUSTED, `${owner} has ${LIMITS.maxWebhooksPerOwner} webhooks, the most one owner may have; delete unused ones first`);
            }
            const created = await tx.registry.insert({ id, owner, externalId, spec, families, internalApproved, secret: seal(deps, id, secret), headers: sealHeaders(deps, id, spec.headers), at });
            return { webhook: toWebhook(created), secret, created: true };
          });
        } catch (err) {
          // A concurrent create with the same external_id won: answer as its retry.
          if ((err as { code?: string }).code === UNIQUE_VIOLATION && round === 0) continue;
          throw err;
        }
      }
    },

    async getWebhook(req, ctx) {
      return { webhook: toWebhook(await visible(deps, ctx, req.webhookId)) };
    },

    async listWebhooks(req, ctx) {
      const caller = ctx.principal.subject;
      const owner = req.owner === '' ? (isAdmin(ctx) ? '' : caller) : ownerFor(ctx, req.owner);
      const status = statusFilter(req.status);
      if (status === undefined) throw invalidArgument('status', 'is not a known WebhookStatus');
      const externalId = checkText('external_id', req.externalId, LIMITS.maxExternalIdChars);
      const pageSize = checkPageSize(req.pageSize);
      const filter = [owner, status, externalId];
      const after = pageTokens.decode(req.pageToken, filter)?.position ?? 0n;
      // One more than a page says whether another page follows.
      const { head, webhooks } = await store.registry.list({ owner, status, externalId }, after, pageSize + 1);
      const page = webhooks.slice(0, pageSize);
      const more = webhooks.length > pageSize;
      return {
        webhooks: page.map(toWebhook),
        nextPageToken: more ? pageTokens.encode({ position: page[page.length - 1]!.createdVersion }, filter) : '',
        version: head,
      };
    },
  };
}

/**
 * What an update writes. Changing where events go (url) or which (event_types) takes the caller's
 * entitlements afresh, as a registration does; otherwise the endpoint keeps those it has. Header
 * values are sealed again only when the update sets them.
 */
function specChange(deps: WebhooksDeps, ctx: HandlerContext, locked: WebhookRecord, spec: Spec, retargeted: boolean, approved: boolean, fields: readonly string[]): SpecChange {
  const sameTypes = spec.eventTypes.length === locked.spec.eventTypes.length && spec.eventTypes.every((t) => locked.spec.eventTypes.includes(t));
  const families = retargeted || !sameTypes ? entitlements(ctx, spec.eventTypes) : locked.families;
  const headers = fields.includes('headers') ? { sealed: sealHeaders(deps, locked.id, spec.headers) } : ('unchanged' as const);
  return { spec, families, internalApproved: approved, headers };
}

/** Changing a webhook: its spec, its deletion, its secret. Each takes the webhook's row lock. */
function registryChangeHandlers(deps: WebhooksDeps): WebhooksHandlers {
  const { store } = deps;
  return {
    async updateWebhook(req, ctx) {
      const current = await visible(deps, ctx, req.webhookId);
      const fields = req.spec ? checkMask(req.updateMask) : [];
      const merge = (base: Spec): Spec => (req.spec ? applyMask(base, { ...base, ...req.spec }, fields) : base);
      const proposed = checkSpec(merge(current.spec));
      const retargeted = proposed.url !== current.spec.url;
      const approved = retargeted ? await checkTarget(deps, ctx, 'spec.url', proposed.url, current.owner) : current.internalApproved;
      const at = new Date(deps.now());
      const updated = await store.transaction(async (tx) => {
        const locked = await tx.registry.lock(req.webhookId);
        if (!locked || locked.state === 'DELETED') throw notFound(`webhook ${req.webhookId} does not exist`);
        if (req.expectedVersion !== undefined && req.expectedVersion !== locked.version) {
          throw new GantryError(Status.ABORTED, `webhook ${req.webhookId} is at version ${locked.version}, not ${req.expectedVersion}: re-read it and retry`);
        }
        const spec = checkSpec(merge(locked.spec));
        if (spec.url !== proposed.url || locked.spec.url !== current.spec.url) throw new GantryError(Status.ABORTED, `webhook ${req.webhookId} changed while it was being updated: re-read it and retry`);
        return tx.registry.update(locked.id, specChange(deps, ctx, locked, spec, retargeted, approved, fields), req.reenable && locked.state === 'DISABLED', at);
      });
      deps.queued();
      return { webhook: toWebhook(updated) };
    },

    async deleteWebhook(req, ctx) {
      checkId('webhook_id', req.webhookId);
      const w = await store.registry.webhook(req.webhookId);
      if (!w) throw notFound(`webhook ${req.webhookId} does not exist`);
      assertAccess(ctx, w);
      if (w.state === 'DELETED') return {};
      const at = new Date(deps.now());
      const cancelled = await store.transaction(async (tx) => {
        const locked = await tx.registry.lock(req.webhookId);
        if (!locked || locked.state === 'DELETED') return [];
        await tx.registry.delete(locked.id, at);
        return tx.queue.cancelPending(locked.id, at);
      });
      for (const id of cancelled) await store.queue.announce(id, 0);
      return {};
    },

    async rotateSecret(req, ctx) {
      await visible(deps, ctx, req.webhookId);
      const overlapMs = req.overlap ? durationToMs(req.overlap) : LIMITS.defaultOverlapMs;
      if (overlapMs < 0 || overlapMs > LIMITS.maxOverlapMs) throw invalidArgument('overlap', 'must be between 0 (revoke the previous secret at once) and 7 days');
      const secret = checkSecret('secret', req.secret) || generateSecret();
      const nowMs = deps.now();
      const previousExpiresAt = overlapMs === 0 ? null : new Date(nowMs + overlapMs);
      const rotated = await store.transaction(async (tx) => {
        const locked = await tx.registry.lock(req.webhookId);
        if (!locked || locked.state === 'DELETED') throw notFound(`webhook ${req.webhookId} does not exist`);
        return tx.registry.rotate(locked.id, seal(deps, locked.id, secret), previousExpiresAt, new Date(nowMs));
      });
      return { secret, previousSecretExpiresAt: previousExpiresAt ?? undefined, webhook: toWebhook(rotated) };
    },
  };
}

/** Publishing events, and the test event of TriggerWebhook. */
function publishHandlers(deps: WebhooksDeps): WebhooksHandlers {
  const { store } = deps;
  return {
    async publishEvent(req, ctx) {
      const result = (await publishEvents(store, [checkEvent(req, '', callerOf(ctx))], deps.maxAttempts(), new Date(deps.now()), () => ''))[0]!;
      if (!result.duplicate && result.deliveryIds.length > 0) deps.queued(result.deliveryIds.length);
      return result;
    },

    async publishEvents(req, ctx) {
      const results = await publishEvents(store, checkBatch(req.events, callerOf(ctx)), deps.maxAttempts(), new Date(deps.now()), (i) => `events[${i}]: `);
      const created = results.reduce((n, r) => (r.duplicate ? n : n + r.deliveryIds.length), 0);
      if (created > 0) deps.queued(created);
      return { results };
    },

    async triggerWebhook(req, ctx) {
      const w = await visible(deps, ctx, req.webhookId);
      if (w.state === 'DISABLED') throw failedPrecondition(`webhook ${w.id} is disabled (${w.disabledReason}); re-enable it with UpdateWebhook reenable = true first`);
      const eventType = req.eventType === '' ? TEST_EVENT_TYPE : checkEventType('event_type', req.eventType, false);
      // A receiver trusts what its secret signs: no made-up platform (or disable) event reaches it this way.
      const family = familyOf(eventType);
      if (eventType !== TEST_EVENT_TYPE && isReservedFamily(family) && !callerOf(ctx).workloadFamilies.has(family)) {
        throw permissionDenied(`event_type: ${eventType} is of the reserved event family ${family}; send a test event of another type (default ${TEST_EVENT_TYPE})`);
      }
      const nowMs = deps.now();
      const eventId = `evt_test_${randomUUID().replaceAll('-', '')}`;
      const payload = req.payload.length > 0
        ? checkPayload('payload', req.payload)
        : Buffer.from(JSON.stringify({ type: eventType, timestamp: new Date(nowMs).toISOString(), data: { webhook_id: w.id, test: true } }));
      const deliveryId = `dlv_${randomUUID().replaceAll('-', '')}`;
      const at = new Date(nowMs);
      const digest = eventDigest(eventType, w.owner, 'application/json', payload);
      await store.transaction(async (tx) => {
        await tx.events.insertEvents([{ eventId, eventType, owner: w.owner, family: '', payload, contentType: 'application/json', digest, occurredAt: at, traceContext: {} }], at);
        await tx.events.insertTestDelivery(deliveryId, w.id, eventId, eventType, deps.maxAttempts(), at);
      });
      deps.queued(1);
      return { eventId, deliveryId };
    },
  };
}

/** Delivery history and the replay of dead letters. */
function deliveryHandlers(deps: WebhooksDeps): WebhooksHandlers {
  const { store } = deps;
  return {
    async getDeliveryHistory(req, ctx) {
      const caller = ctx.principal.subject;
      const webhookIds = req.webhookId === '' ? await store.registry.webhookIdsOf(caller, LIMITS.maxHistoryWebhooks) : [await historyWebhook(deps, ctx, req.webhookId)];
      const eventId = checkText('event_id', req.eventId, LIMITS.maxEventIdChars);
      const status = deliveryStatusFilter(req.status);
      if (status === undefined) throw invalidArgument('status', 'is not a known DeliveryStatus');
      const pageSize = checkPageSize(req.pageSize);
      const since = checkTimestamp('since', req.since);
      const filter = [req.webhookId, caller, eventId, status, since?.toISOString() ?? ''];
      const before = pageTokens.decode(req.pageToken, filter)?.position ?? null;
      const rows = await store.queue.history({ webhookIds, eventId, status, since: since ?? null }, before, pageSize + 1);
      const page = rows.slice(0, pageSize);
      return { deliveries: page.map(toDelivery), nextPageToken: rows.length > pageSize ? pageTokens.encode({ position: page[page.length - 1]!.seq }, filter) : '' };
    },

    async retryFailedDeliveries(req, ctx) {
      const sel = req.selector;
      if (!sel) throw invalidArgument('selector', 'set delivery_id, or since with webhook_id');
      const nowMs = deps.now();
      let ids: string[];
      if (sel.$case === 'deliveryId') {
        checkId('delivery_id', sel.value);
        const d = await store.queue.delivery(sel.value);
        if (!d) throw notFound(`delivery ${sel.value} does not exist`);
        const w = await store.registry.webhook(d.webhookId);
        if (!w || w.state === 'DELETED') throw notFound(`delivery ${sel.value} belongs to a deleted webhook`);
        assertAccess(ctx, w);
        if (w.state === 'DISABLED') throw failedPrecondition(`webhook ${w.id} is disabled (${w.disabledReason}); re-enable it first`);
        if (d.status !== 'DEAD_LETTERED') throw failedPrecondition(`delivery ${d.id} is ${d.status}, not DEAD_LETTERED; only dead letters are replayed`);
        ids = await store.queue.requeue({ deliveryId: d.id }, new Date(nowMs), deps.maxAttempts(), 1);
      } else {
        if (req.webhookId === '') throw invalidArgument('webhook_id', 'is required with since');
        if (checkTimestamp('since', sel.value).getTime() > nowMs) throw invalidArgument('since', 'is in the future');
        const w = await visible(deps, ctx, req.webhookId);
        if (w.state === 'DISABLED') throw failedPrecondition(`webhook ${w.id} is disabled (${w.disabledReason}); re-enable it first`);
        ids = await store.queue.requeue({ webhookId: w.id, since: sel.value }, new Date(nowMs), deps.maxAttempts(), LIMITS.maxRequeue);
      }
      if (ids.length > 0) deps.queued();
      return { requeued: ids.length, deliveryIds: ids.slice(0, LIMITS.maxRequeueIdsReturned) };
    },
  };
}

/** What a caller observes of its webhooks: statistics and the two watches. */
function observationHandlers(deps: WebhooksDeps): WebhooksHandlers {
  const { store } = deps;
  return {
    async getWebhookStatistics(req, ctx) {
      const w = await historyWebhookRecord(deps, ctx, req.webhookId);
      const windowMs = req.window ? durationToMs(req.window) : LIMITS.defaultStatsWindowMs;
      if (windowMs <= 0 || windowMs > LIMITS.maxStatsWindowMs) throw invalidArgument('window', 'must be positive and at most 30 days');
      const windowStart = new Date(deps.now() - windowMs);
      const s = await store.queue.statistics(w.id, windowStart);
      const decided = s.succeeded + s.deadLettered;
      return {
        webhookId: w.id,
        windowStart,
        totalDeliveries: s.total,
        succeeded: s.succeeded,
        deadLettered: s.deadLettered,
        pending: s.pending,
        totalAttempts: s.attempts,
        failedAttempts: s.failedAttempts,
        successRateBp: decided === 0n ? 0 : Number((s.succeeded * 10_000n) / decided),
        latencyP50Ms: s.latencyP50Ms,
        latencyP99Ms: s.latencyP99Ms,
        lastSuccessAt: s.lastSuccessAt ?? undefined,
        lastFailureAt: s.lastFailureAt ?? undefined,
      };
    },

    watchWebhookRegistry: (req, ctx) => deps.streams.watchRegistry(req, ctx, ownerFor(ctx, req.owner), req.owner === '' && isAdmin(ctx)),
    async *watchDeliveries(req, ctx) {
      const caller = ctx.principal.subject;
      const scope = req.webhookId === '' ? { owner: caller } : { webhookId: await historyWebhook(deps, ctx, req.webhookId) };
      yield* deps.streams.watchDeliveries(req, ctx, scope);
    },
  };
}
