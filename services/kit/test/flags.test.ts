// Feature flags as every runtime serves them, on PGlite and PostgreSQL: PutFlag's validation
// refuses bad flags and changes nothing, versions are consecutive and guard writes, watches start
// with a BOOKMARK, resume, and end with OUT_OF_RANGE past the retained history; evaluation goes
// through the OpenFeature client with flagd's rules (DISABLED, fractional, context targeting); and
// a change through one replica reaches another replica's evaluation within a second.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { ProviderEvents, StandardResolutionReasons, type EventHandler } from '@openfeature/server-sdk';
import { flagsv1 } from '@gantry/proto';
import {
  FLAGS_READ_SCOPE,
  FLAGS_WRITE_SCOPE,
  FlagsClient,
  OPERATOR_WORKLOAD,
  Status,
  bearerMetadata,
  clientCredentials,
  clientOptions,
  flagFromSpec,
  flagsSchemaFor,
  type FlagsLimits,
  type OpenFeatureClient,
  type Runtime,
} from '../src/index.js';
import { assertStatus, eventually, tokenFor, workloadCredentials } from '@gantry/test-support/clients';
import { startServicePlatform } from '@gantry/test-support/harness';
import { engines, freshPostgresDatabase, requirePostgresInCi } from '@gantry/test-support/databases';

/** Small bounds so the tests reach them quickly. */
const TEST_LIMITS: Partial<FlagsLimits> = { retainedChanges: 10, maxFlags: 12, pollMs: 1000 };

interface Replica {
  runtime: Runtime;
  client: FlagsClient;
  /** A client calling as the operator workload (its certificate, no token). */
  operatorClient(): Promise<FlagsClient>;
  /** The client the service factory received in ServiceDeps. */
  depsFlags: OpenFeatureClient;
  close(): Promise<void>;
}

/** A runtime with one (module-less) service target `flagtest`, on `databaseUrl` or a fresh PGlite. */
async function startReplica(databaseUrl: string | undefined): Promise<Replica> {
  let depsFlags: OpenFeatureClient | undefined;
  const platform = await startServicePlatform('PGlite', [{ name: 'flagtest', create: (deps) => ((depsFlags = deps.flags), []) }], {
    dbLabel: 't_flags',
    overrides: { rateLimit: { points: 100_000, windowSec: 1 } },
    flagsLimits: TEST_LIMITS,
    workloads: new Map([[OPERATOR_WORKLOAD, { scopes: [FLAGS_READ_SCOPE, FLAGS_WRITE_SCOPE], families: [] }]]),
    ...(databaseUrl ? { sharedDatabaseUrl: databaseUrl } : {}),
  });
  const token = tokenFor(platform.dataDir, 'flags-test', [FLAGS_READ_SCOPE, FLAGS_WRITE_SCOPE]);
  const client = new FlagsClient(platform.address, clientCredentials(platform.tls), clientOptions(platform.tls), () => bearerMetadata(token));
  return {
    runtime: platform.runtime,
    client,
    operatorClient: async () => new FlagsClient(platform.address, await workloadCredentials(platform.dataDir, OPERATOR_WORKLOAD), clientOptions(platform.tls), () => new Metadata()),
    depsFlags: depsFlags!,
    async close() {
      client.close();
      await platform.close();
    },
  };
}

/** A proto Flag from the flagd shape, as callers write it. */
function flag(key: string, f: { variants: Record<string, unknown>; defaultVariant: string; state?: 'ENABLED' | 'DISABLED'; targeting?: Record<string, unknown> }): flagsv1.Flag {
  return { ...flagFromSpec({ state: f.state ?? 'ENABLED', type: typeof Object.values(f.variants)[0] as 'boolean', variants: f.variants, defaultVariant: f.defaultVariant, targeting: f.targeting }, { name: key, source: '' }) };
}
const boolFlag = (key: string, on: boolean, state: 'ENABLED' | 'DISABLED' = 'ENABLED') => flag(key, { variants: { on: true, off: false }, defaultVariant: on ? 'on' : 'off', state });


/** Reads a watch into `events` until aborted; resolves with its end (undefined when cancelled by us). */
function collect(stream: AsyncIterable<flagsv1.WatchFlagsResponse>, events: flagsv1.WatchFlagsResponse[]): Promise<ServiceError | undefined> {
  return (async () => {
    try {
      for await (const e of stream) events.push(e);
      return undefined;
    } catch (err) {
      return (err as ServiceError).code === Status.CANCELLED ? undefined : (err as ServiceError);
    }
  })();
}

const summary = (events: flagsv1.WatchFlagsResponse[]) => events.map((e) => `${flagsv1.flagEventTypeToJSON(e.type).replace('FLAG_EVENT_TYPE_', '')} ${e.flag?.key ?? '-'} ${e.version}`);

requirePostgresInCi('the flags tests');

test('the flags schema is flags_<target>, or the sorted targets joined by _', () => {
  assert.equal(flagsSchemaFor(['webhooks']), 'flags_webhooks');
  assert.equal(flagsSchemaFor(['log', 'settlement', 'approvals', 'webhooks']), 'flags_approvals_log_settlement_webhooks');
});

for (const engine of engines()) {
  describe(`flags on ${engine.name}`, { skip: engine.skip }, () => {
    let db: { url: string; drop(): Promise<void> } | undefined;
    let a: Replica;

    before(async () => {
      db = engine.name === 'PostgreSQL' ? await freshPostgresDatabase('t_flags') : undefined;
      a = await startReplica(db?.url);
    });
    after(async () => {
      await a?.close();
      await db?.drop();
    });

    test('the service is served from the process schema and services get the same flags client as the runtime', async () => {
      assert.equal(a.runtime.flagsSchema, 'flags_flagtest');
      await a.client.put(boolFlag('deps.check', true));
      assert.equal(await a.depsFlags.getBooleanValue('deps.check', false), true);
      assert.equal(await a.client.delete('deps.check'), true);
    });

    test('invalid flags are refused with INVALID_ARGUMENT naming the problem, and change nothing', async () => {
      const before = await a.client.list();
      const cases: [flagsv1.Flag, RegExp][] = [
        [boolFlag('bad key!', true), /flag\.key: must be 1-128 characters/],
        [boolFlag('x'.repeat(129), true), /flag\.key/],
        [{ ...boolFlag('no.state', true), state: flagsv1.FlagState.FLAG_STATE_UNSPECIFIED }, /flag\.state/],
        [{ ...boolFlag('no.variants', true), variants: {} }, /flag\.variants: must have 1 to 64 variants/],
        [{ ...boolFlag('many.variants', true), variants: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`v${i}`, i === 0])) , defaultVariant: 'v0' }, /1 to 64 variants; it has 65/],
        [{ ...boolFlag('mixed', true), variants: { on: true, off: 'no' } }, /all variants of a flag have one type/],
        [{ ...boolFlag('list.variant', true), variants: { on: [1, 2] } , defaultVariant: 'on' }, /variants are booleans, strings, numbers or objects/],
        [{ ...boolFlag('bad.default', true), defaultVariant: 'maybe' }, /flag\.default_variant: "maybe" is not one of the variants/],
        [{ ...boolFlag('bad.targeting', true), targeting: { no_such_operator: [1, 2] } }, /flag\.targeting/],
        [{ ...boolFlag('big.targeting', true), targeting: { in: ['x', ['a'.repeat(70_000)]] } }, /flag\.targeting: is \d+ bytes as JSON; the maximum is 65536/],
        [{ ...boolFlag('bad.metadata', true), metadata: { owner: { team: 'x' } } }, /flag\.metadata\.owner: is a object/],
        [{ ...boolFlag('long.source', true), source: 's'.repeat(257) }, /flag\.source: is 257 characters/],
      ];
      for (const [f, message] of cases) await assertStatus(a.client.put(f), Status.INVALID_ARGUMENT, message);
      await assertStatus(a.client.get('bad key!'), Status.INVALID_ARGUMENT, /key: must be/);
      await assertStatus(a.client.delete(''), Status.INVALID_ARGUMENT, /key: must be/);
      assert.deepEqual(await a.client.list(), before);
    });

    test('create, replace and delete take consecutive versions; expected_version guards each and a mismatch is ABORTED', async () => {
      const head = (await a.client.list()).version;
      const created = await a.client.put(boolFlag('checkout.new-flow', false), 0n);
      assert.equal(created.created, true);
      assert.equal(created.flag!.version, head + 1n);
      assert.equal(created.flag!.source, 'principal:flags-test', 'the source is the caller');
      assert.ok(created.flag!.updatedAt instanceof Date);
      await assertStatus(a.client.put(boolFlag('checkout.new-flow', true), 0n), Status.ABORTED, /is at version \d+, not 0: re-read it and retry/);
      await assertStatus(a.client.put(boolFlag('checkout.new-flow', true), head), Status.ABORTED);
      const replaced = await a.client.put({ ...boolFlag('checkout.new-flow', true), source: '' }, head + 1n);
      assert.equal(replaced.created, false);
      assert.equal(replaced.flag!.version, head + 2n);
      assert.equal(replaced.flag!.source, 'principal:flags-test', 'an empty source is the caller');
      const got = await a.client.get('checkout.new-flow');
      assert.equal(got.defaultVariant, 'on');
      assert.equal(got.version, head + 2n);
      assert.deepEqual(got.variants, { on: true, off: false });
      await assertStatus(a.client.delete('checkout.new-flow', head + 1n), Status.ABORTED);
      assert.equal(await a.client.delete('checkout.new-flow', head + 2n), true);
      assert.equal(await a.client.delete('checkout.new-flow'), false, 'deleting a missing flag succeeds with existed = false');
      assert.equal((await a.client.list()).version, head + 3n, 'the failed writes and the no-op delete took no version');
      await assertStatus(a.client.get('checkout.new-flow'), Status.NOT_FOUND, /does not exist/);
    });

    test("a flag's source is its writer: nobody else can claim the operator's marker or another name; the operator workload writes its marker", async () => {
      const owned = (source: string) => ({ ...boolFlag('owned.flag', true), source });
      await assertStatus(a.client.put(owned('operator:prod/owned')), Status.PERMISSION_DENIED, /flag\.source "operator:prod\/owned" is not yours to claim: .* for this caller principal:flags-test; leave it empty/);
      await assertStatus(a.client.put(owned('principal:somebody-else')), Status.PERMISSION_DENIED, /not yours to claim/);
      await assertStatus(a.client.get('owned.flag'), Status.NOT_FOUND);
      assert.equal((await a.client.put(owned('principal:flags-test'))).flag!.source, 'principal:flags-test', 'naming oneself is allowed');
      const operator = await a.operatorClient();
      try {
        assert.equal((await operator.put(owned('operator:prod/owned'))).flag!.source, 'operator:prod/owned');
        assert.equal((await operator.put(owned(''))).flag!.source, 'principal:spiffe://gantry.local/operator');
        await assertStatus(operator.put(owned('principal:flags-test')), Status.PERMISSION_DENIED, /not yours to claim/);
      } finally {
        operator.close();
      }
      assert.equal(await a.client.delete('owned.flag'), true);
    });

    test('ListFlags returns every flag in key order with the store version', async () => {
      for (const key of ['zeta', 'Alpha', 'alpha.2', 'alpha']) await a.client.put(boolFlag(key, true));
      const list = await a.client.list();
      assert.deepEqual(list.flags.map((f) => f.key), ['Alpha', 'alpha', 'alpha.2', 'zeta']);
      assert.equal(list.version, list.flags.reduce((m, f) => (f.version > m ? f.version : m), 0n));
      for (const key of ['zeta', 'Alpha', 'alpha.2', 'alpha']) await a.client.delete(key);
    });

    test('a store holds at most maxFlags flags: one more is RESOURCE_EXHAUSTED, replacing one is not', async () => {
      const keys = Array.from({ length: 12 }, (_, i) => `fill.${i}`);
      for (const key of keys) await a.client.put(boolFlag(key, true));
      await assertStatus(a.client.put(boolFlag('fill.one-too-many', true)), Status.RESOURCE_EXHAUSTED, /holds 12 flags, the most it may \(12\); delete unused flags first/);
      await a.client.put(boolFlag('fill.0', false));
      for (const key of keys) await a.client.delete(key);
    });

    test('a watch from 0 starts with a BOOKMARK and then sends every change; a watch from a version resumes after it', async () => {
      const abort = new AbortController();
      const events: flagsv1.WatchFlagsResponse[] = [];
      const ended = collect(a.client.watch(0n, abort.signal), events);
      assert.ok(await eventually(() => events.length === 1, 5000), 'the BOOKMARK arrives');
      const start = events[0]!.version;
      assert.equal(events[0]!.type, flagsv1.FlagEventType.FLAG_EVENT_TYPE_BOOKMARK);
      assert.equal(start, (await a.client.list()).version);
      await a.client.put(boolFlag('watch.me', true));
      await a.client.put(boolFlag('watch.me', false));
      await a.client.delete('watch.me');
      assert.ok(await eventually(() => events.length === 4, 5000), `got ${summary(events).join(', ')}`);
      assert.deepEqual(summary(events), [`BOOKMARK - ${start}`, `PUT watch.me ${start + 1n}`, `PUT watch.me ${start + 2n}`, `DELETED watch.me ${start + 3n}`]);
      assert.equal(events[2]!.flag!.defaultVariant, 'off');
      abort.abort();
      assert.equal(await ended, undefined);

      const resumed: flagsv1.WatchFlagsResponse[] = [];
      const abort2 = new AbortController();
      const ended2 = collect(a.client.watch(start + 1n, abort2.signal), resumed);
      assert.ok(await eventually(() => resumed.length === 2, 5000), `got ${summary(resumed).join(', ')}`);
      assert.deepEqual(summary(resumed), [`PUT watch.me ${start + 2n}`, `DELETED watch.me ${start + 3n}`]);
      abort2.abort();
      assert.equal(await ended2, undefined);
    });

    test('a watch from a version older than the retained history ends with OUT_OF_RANGE saying to re-list', async () => {
      const old = (await a.client.list()).version;
      for (let i = 0; i < 12; i++) await a.client.put(boolFlag('churn', i % 2 === 0));
      const events: flagsv1.WatchFlagsResponse[] = [];
      const end = await collect(a.client.watch(old, AbortSignal.timeout(5000)), events);
      assert.equal(end?.code, Status.OUT_OF_RANGE, `got ${end?.details}`);
      assert.match(end.details, /older than the retained history.*list the flags again.*watch from the list's version/);
      assert.deepEqual(events, []);
      // Within the retained history it still resumes.
      const recent: flagsv1.WatchFlagsResponse[] = [];
      const abort = new AbortController();
      const ended = collect(a.client.watch(old + 5n, abort.signal), recent);
      assert.ok(await eventually(() => recent.length === 7, 5000), `got ${summary(recent).join(', ')}`);
      abort.abort();
      await ended;
      const future = await collect(a.client.watch(old + 1000n, AbortSignal.timeout(5000)), []);
      assert.equal(future?.code, Status.OUT_OF_RANGE);
      await a.client.delete('churn');
    });

    test('a boolean flag evaluates through OpenFeature; a DISABLED one gives the caller default with reason DISABLED', async () => {
      const flags = a.runtime.flags;
      const changed: string[][] = [];
      const handler: EventHandler = (d) => void changed.push((d?.flagsChanged as string[] | undefined) ?? []);
      flags.addHandler(ProviderEvents.ConfigurationChanged, handler);
      try {
        assert.equal(await flags.getBooleanValue('webhooks.delivery.paused', false), false, 'an unknown flag is the default');
        assert.equal((await flags.getBooleanDetails('webhooks.delivery.paused', false)).errorCode, 'FLAG_NOT_FOUND');
        await a.client.put(boolFlag('webhooks.delivery.paused', true));
        // The write answers once this replica evaluates it.
        const on = await flags.getBooleanDetails('webhooks.delivery.paused', false);
        assert.equal(on.value, true);
        assert.equal(on.reason, StandardResolutionReasons.STATIC);
        assert.equal(on.variant, 'on');
        await a.client.put(boolFlag('webhooks.delivery.paused', true, 'DISABLED'));
        const disabled = await flags.getBooleanDetails('webhooks.delivery.paused', false);
        assert.equal(disabled.value, false);
        assert.equal(disabled.reason, StandardResolutionReasons.DISABLED);
        assert.ok(await eventually(() => changed.some((c) => c.includes('webhooks.delivery.paused')), 2000), 'PROVIDER_CONFIGURATION_CHANGED names the flag');
        await a.client.delete('webhooks.delivery.paused');
        assert.equal(await flags.getBooleanValue('webhooks.delivery.paused', true), true);
      } finally {
        flags.removeHandler(ProviderEvents.ConfigurationChanged, handler);
      }
    });

    test('an undefined flag answers the default without the SDK; with a hook registered the SDK evaluates it, and hooks see FLAG_NOT_FOUND', async () => {
      const flags = a.runtime.flags;
      assert.equal(await flags.getBooleanValue('undefined.switch', true, { targetingKey: 'w' }), true);
      assert.equal(await flags.getStringValue('undefined.switch', 'x'), 'x');
      assert.equal(await flags.getNumberValue('undefined.switch', 7), 7);
      assert.deepEqual(await flags.getObjectValue('undefined.switch', { a: 1 }), { a: 1 });
      const seen: string[] = [];
      const hook = { error: (_ctx: unknown, err: unknown) => void seen.push((err as { code?: string }).code ?? String(err)) };
      flags.addHooks(hook);
      try {
        assert.equal(await flags.getBooleanValue('undefined.switch', false), false);
        assert.deepEqual(seen, ['FLAG_NOT_FOUND'], 'the SDK evaluated the undefined flag and ran the hook');
      } finally {
        flags.clearHooks();
      }
      await a.client.put(boolFlag('defined.switch', true));
      try {
        assert.equal(await flags.getBooleanValue('defined.switch', false), true, 'a defined flag is evaluated');
      } finally {
        await a.client.delete('defined.switch');
      }
      assert.equal(await flags.getBooleanValue('defined.switch', false), false, 'deleted: the default again');
    });

    test('a fractional rule splits targeting keys stably between variants', async () => {
      await a.client.put(flag('rollout.color', { variants: { red: 'red', blue: 'blue' }, defaultVariant: 'red', targeting: { fractional: [['red', 50], ['blue', 50]] } }));
      const counts = { red: 0, blue: 0 } as Record<string, number>;
      for (let i = 0; i < 200; i++) {
        const d = await a.runtime.flags.getStringDetails('rollout.color', 'none', { targetingKey: `user-${i}` });
        assert.equal(d.reason, StandardResolutionReasons.TARGETING_MATCH);
        counts[d.value] = (counts[d.value] ?? 0) + 1;
        assert.equal(await a.runtime.flags.getStringValue('rollout.color', 'none', { targetingKey: `user-${i}` }), d.value, 'the same key gets the same variant');
      }
      assert.ok(counts.red! > 60 && counts.blue! > 60, `a 50/50 split of 200 keys: ${JSON.stringify(counts)}`);
      await a.client.delete('rollout.color');
    });

    test('a rule on a context attribute picks the variant; without a match the default variant', async () => {
      await a.client.put(flag('beta.banner', {
        variants: { shown: true, hidden: false },
        defaultVariant: 'hidden',
        targeting: { if: [{ ends_with: [{ var: 'email' }, '@example.com'] }, 'shown', null] },
      }));
      const staff = await a.runtime.flags.getBooleanDetails('beta.banner', false, { email: 'ann@example.com' });
      assert.deepEqual([staff.value, staff.variant, staff.reason], [true, 'shown', StandardResolutionReasons.TARGETING_MATCH]);
      const other = await a.runtime.flags.getBooleanDetails('beta.banner', true, { email: 'bob@elsewhere.org' });
      assert.deepEqual([other.value, other.variant, other.reason], [false, 'hidden', StandardResolutionReasons.DEFAULT]);
      await a.client.delete('beta.banner');
    });

    test('a second runtime in the same process evaluates its own store under its own OpenFeature domain', async () => {
      const other = await startReplica(undefined);
      try {
        await a.client.put(boolFlag('domain.check', true));
        await other.client.put(boolFlag('domain.check', false));
        assert.equal(await a.runtime.flags.getBooleanValue('domain.check', false), true);
        assert.equal(await other.runtime.flags.getBooleanValue('domain.check', true), false);
      } finally {
        await other.close();
      }
      assert.equal(await a.runtime.flags.getBooleanValue('domain.check', false), true, 'stopping one runtime leaves the other');
      await a.client.delete('domain.check');
    });

    if (engine.name === 'PostgreSQL') {
      test('replicas on one database: a put through replica A changes evaluation on replica B within 1 s', async () => {
        const b = await startReplica(db!.url);
        try {
          assert.equal(b.runtime.flagsSchema, a.runtime.flagsSchema);
          const latencies: number[] = [];
          for (const value of [true, false, true, false, true]) {
            const started = performance.now();
            await a.client.put(boolFlag('replicated.kill-switch', value));
            while ((await b.runtime.flags.getBooleanValue('replicated.kill-switch', !value)) !== value) {
              assert.ok(performance.now() - started < 5000, 'replica B never saw the change');
              await new Promise((r) => setTimeout(r, 2));
            }
            latencies.push(performance.now() - started);
          }
          const worst = Math.max(...latencies);
          console.log(`flags replica latency (put on A → evaluation on B), ms: ${latencies.map((l) => l.toFixed(1)).join(', ')}; worst ${worst.toFixed(1)}`);
          assert.ok(worst < 1000, `worst ${worst.toFixed(1)} ms`);
          // And B's writes reach A's watches: one feed per process, fed by every replica.
          const events: flagsv1.WatchFlagsResponse[] = [];
          const abort = new AbortController();
          const ended = collect(a.client.watch(0n, abort.signal), events);
          assert.ok(await eventually(() => events.length === 1, 5000));
          await b.client.delete('replicated.kill-switch');
          assert.ok(await eventually(() => events.length === 2, 2000), `got ${summary(events).join(', ')}`);
          assert.equal(events[1]!.type, flagsv1.FlagEventType.FLAG_EVENT_TYPE_DELETED);
          abort.abort();
          await ended;
          assert.equal(await a.runtime.flags.getBooleanValue('replicated.kill-switch', false), false);
        } finally {
          await b.close();
        }
      });
    }
  });
}

test('flagFromSpec turns a FeatureFlag spec into a Flag and refuses variants of another type', () => {
  const f = flagFromSpec({ state: 'DISABLED', type: 'string', variants: { a: 'A', b: 'B' }, defaultVariant: 'b', targets: ['webhooks'] }, { name: 'ns-flag', source: 'operator:ns/ns-flag' });
  assert.equal(f.key, 'ns-flag');
  assert.equal(f.state, flagsv1.FlagState.FLAG_STATE_DISABLED);
  assert.equal(f.source, 'operator:ns/ns-flag');
  assert.equal(flagFromSpec({ key: 'explicit', state: 'ENABLED', variants: { on: true }, defaultVariant: 'on' }, { name: 'n', source: '' }).key, 'explicit');
  assert.throws(() => flagFromSpec({ state: 'ENABLED', type: 'boolean', variants: { on: true, off: 'no' }, defaultVariant: 'on' }, { name: 'n', source: '' }), /spec\.variants\.off: is string, but spec\.type is boolean/);
});
