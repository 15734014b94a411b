// gantry.flags.v1.FlagsService: every runtime serves it over its own flags store.
import { flagsv1 } from '@gantry/proto';
import { GantryError, Status, notFound, outOfRange, permissionDenied } from '../errors.js';
import type { HandlerContext } from '../rpc/context.js';
import { defineService, type Handlers, type ScopeTable, type ServiceModule } from '../rpc/service.js';
import type { FlagsLimits } from './limits.js';
import type { FlagsFeed, FlagsSnapshot } from './snapshot.js';
import type { FlagChange, FlagsStore } from './store.js';
import { checkFlagKey, validateFlag } from './validation.js';

export const FLAGS_READ_SCOPE = 'flags.read';
export const FLAGS_WRITE_SCOPE = 'flags.write';

/** Scopes of FlagsService: reads and watches need flags.read, writes flags.write. */
export const flagsScopes: ScopeTable<typeof flagsv1.FlagsServiceService> = {
  putFlag: [FLAGS_WRITE_SCOPE],
  deleteFlag: [FLAGS_WRITE_SCOPE],
  listFlags: [FLAGS_READ_SCOPE],
  getFlag: [FLAGS_READ_SCOPE],
  watchFlags: [FLAGS_READ_SCOPE],
};

/** Trailer carrying the version a cut-off or interrupted watch resumes from (from_version). */
export const FLAGS_RESUME_VERSION_TRAILER = 'gantry-resume-version';

export interface FlagsServiceDeps {
  store: FlagsStore;
  feed: FlagsFeed;
  snapshot: FlagsSnapshot;
  limits: FlagsLimits;
  now: () => Date;
}

const EVENT_TYPE = { PUT: flagsv1.FlagEventType.FLAG_EVENT_TYPE_PUT, DELETED: flagsv1.FlagEventType.FLAG_EVENT_TYPE_DELETED } as const;

function event(c: FlagChange): flagsv1.WatchFlagsResponse {
  const flag = c.flag ?? { key: c.key, state: flagsv1.FlagState.FLAG_STATE_UNSPECIFIED, variants: {}, defaultVariant: '', targeting: undefined, metadata: {}, source: '', version: c.version, updatedAt: undefined };
  return { type: EVENT_TYPE[c.type], flag, version: c.version };
}

/** Who wrote a flag: the caller. */
const callerSource = (ctx: HandlerContext) => `principal:${ctx.principal.subject}`.slice(0, 256);

/** The workload of the operator, whose flags name the FeatureFlag they come from. */
export const OPERATOR_WORKLOAD = 'operator';
/** The operator's ownership marker: its flags' source is `operator:<namespace>/<name>` (operator/src/reconcilers/featureflag.ts). */
export const OPERATOR_SOURCE_PREFIX = 'operator:';

/**
 * A written flag's source, from the caller, never taken on its word: the operator workload names
 * the FeatureFlag it writes for (its marker, how it tells its flags from others), anyone else is
 * `principal:<subject>`. A source in the request must be that one (or empty): otherwise a caller
 * could claim a flag for the operator, or for somebody else.
 */
function sourceFor(requested: string, ctx: HandlerContext): string {
  const caller = callerSource(ctx);
  const operator = ctx.principal.workload?.name === OPERATOR_WORKLOAD;
  if (operator && requested.startsWith(OPERATOR_SOURCE_PREFIX)) return requested;
  if (requested === '' || requested === caller) return caller;
  const own = operator ? `${OPERATOR_SOURCE_PREFIX}<namespace>/<name> or ${caller}` : caller;
  throw permissionDenied(`flag.source ${JSON.stringify(requested.slice(0, 80))} is not yours to claim: a flag's source is who wrote it, for this caller ${own}; leave it empty`);
}

/**
 * A watch: a BOOKMARK at the head (from_version 0) or the changes after from_version from the
 * history, then the live feed; cut off with a resume version when it falls behind or the server drains.
 */
async function* watch(deps: FlagsServiceDeps, req: flagsv1.WatchFlagsRequest, ctx: HandlerContext): AsyncGenerator<flagsv1.WatchFlagsResponse> {
  const { store, feed, limits } = deps;
  let after = req.fromVersion;
  const head = await store.headVersion();
  if (after === 0n) {
    after = head;
    yield { type: flagsv1.FlagEventType.FLAG_EVENT_TYPE_BOOKMARK, flag: undefined, version: after };
  } else if (after > head) {
    throw outOfRange(`version ${after} is newer than this store's version ${head} (was the store replaced?); list the flags again and watch from the list's version`);
  }
  let delivered = after;
  const resumeFrom = () => ({ trailers: { [FLAGS_RESUME_VERSION_TRAILER]: delivered.toString() } });
  const interrupted = () => {
    if (ctx.draining.aborted) throw new GantryError(Status.UNAVAILABLE, `server is shutting down; watch again from version ${delivered} on another replica`, resumeFrom());
  };
  if (feed.full) throw new GantryError(Status.RESOURCE_EXHAUSTED, `this replica follows ${limits.maxWatches} flag watches already; retry later or on another replica`, resumeFrom());
  // Catch up from the history, then follow the feed (synchronously subscribed after the last check).
  for (;;) {
    if (ctx.signal.aborted) return;
    interrupted();
    const page = await store.changesAfter(after, limits.readChanges);
    if (after < page.oldestRetained - 1n) {
      throw outOfRange(`version ${after} is older than the retained history (the last ${limits.retainedChanges} changes, from version ${page.oldestRetained}); list the flags again (ListFlags) and watch from the list's version`);
    }
    for (const c of page.changes) {
      after = c.version;
      delivered = c.version;
      yield event(c);
    }
    if (page.changes.length < limits.readChanges && after >= feed.offeredThrough) break;
  }
  if (feed.full) throw new GantryError(Status.RESOURCE_EXHAUSTED, `this replica follows ${limits.maxWatches} flag watches already; retry later or on another replica`, resumeFrom());
  const sub = feed.subscribe(after, () => true);
  const wakeOn = AbortSignal.any([ctx.signal, ctx.draining]);
  try {
    for (;;) {
      const c = sub.take();
      if (c) {
        delivered = c.version;
        yield event(c);
        continue;
      }
      if (sub.overflowed) {
        throw new GantryError(Status.RESOURCE_EXHAUSTED, `the watch fell behind by more than ${limits.queueEvents} changes; watch again from version ${delivered}`, resumeFrom());
      }
      if (ctx.signal.aborted) return;
      interrupted();
      await sub.wait(limits.pollMs, wakeOn);
    }
  } finally {
    feed.unsubscribe(sub);
  }
}

/** FlagsService's handlers over one process's store, feed and snapshot. */
export function flagsHandlers(deps: FlagsServiceDeps): Handlers<typeof flagsv1.FlagsServiceService> {
  const { store, snapshot, limits } = deps;

  /** This replica evaluates what it just wrote (other replicas follow within their feed's latency). */
  const settle = (version: bigint) => snapshot.reached(version, limits.settleMs);

  return {
    async putFlag(req, ctx) {
      const valid = validateFlag(req.flag);
      valid.source = sourceFor(valid.source, ctx);
      const out = await store.put(valid, req.expectedVersion, deps.now());
      await settle(out.flag.version);
      return out;
    },

    async deleteFlag(req, ctx) {
      const key = checkFlagKey('key', req.key);
      const out = await store.delete(key, req.expectedVersion, callerSource(ctx), deps.now());
      if (out.existed) await settle(out.version);
      return { existed: out.existed };
    },

    async listFlags() {
      return store.list();
    },

    async getFlag(req) {
      const key = checkFlagKey('key', req.key);
      const flag = await store.get(key);
      if (!flag) throw notFound(`flag ${key} does not exist; list the flags with ListFlags (gantry flags list)`);
      return { flag };
    },

    watchFlags: (req, ctx) => watch(deps, req, ctx),
  };
}

/** The FlagsService module over `deps`. */
export function flagsModule(deps: FlagsServiceDeps): ServiceModule {
  return defineService({
    name: 'gantry.flags.v1.FlagsService',
    definition: flagsv1.FlagsServiceService,
    scopes: flagsScopes,
    handlers: flagsHandlers(deps),
    // A flag is at most 128 KiB as JSON, but its targeting as a protobuf Struct can be several
    // times its JSON (a number: 2 bytes of JSON, 11 of Value), so the request gets room for that.
    maxRequestBytes: { putFlag: 1024 * 1024 },
  });
}

