// Structured fuzzing of every RPC of every Gantry service (issue #20): fast-check builds requests
// from the services' own descriptors (any field value, nested messages, unknown enum numbers,
// oversized strings), sometimes mangles their bytes (truncated, trailing garbage, random), and
// sends them with random metadata (every scope, some, a forged token, none) to `gantry serve
// --target=all` in its own process, on each engine. No answer may be INTERNAL or UNKNOWN (a bad
// request is the caller's error, with the status that says so), the process must not crash, and
// it must still be SERVING afterwards. A failing case is printed with fast-check's seed and path,
// so it can be replayed and kept as a regression test.
//
// GANTRY_TEST_FUZZ_RUNS (default 2,000 per engine; `npm run fuzz` runs 100,000) sets the count and
// GANTRY_TEST_FUZZ_SEED the seed: fixed in the suite, so CI replays the same requests every time
// (a new finding must not turn CI red at random); `npm run fuzz` draws a new seed each run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { create, createFileRegistry, fromBinary, ScalarType, toBinary, type DescField, type DescMessage, type DescMethod, type DescService, type MessageInitShape } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { credentials, Client, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import fc from 'fast-check';
import { descriptorSetPath } from '@gantry/proto';
import { allScopes } from '@gantry/cli/registry';
import { checkHealth, tokenFor } from '@gantry/test-support/clients';
import { freshPostgresDatabase, postgresSkip } from '@gantry/test-support/harness';
import { startGantry, type GantryServer } from '../support/gantry-process.js';

const RUNS = Number(process.env.GANTRY_TEST_FUZZ_RUNS ?? 2_000);
const SEED = process.env.GANTRY_TEST_FUZZ_SEED === 'random' ? Date.now() : Number(process.env.GANTRY_TEST_FUZZ_SEED ?? 20_261_206);
/** Calls in flight at once: enough to load the server, few enough that deadlines hold on 2 cores. */
const PARALLEL = 16;
const CALL_DEADLINE_MS = 5_000;
/** How long a server stream (a watch, Tail follow) is read before the call is cancelled. */
const STREAM_READ_MS = 150;
/** Answers that say the server failed rather than the request: none may come back. */
const SERVER_FAULTS = new Set([status.INTERNAL, status.UNKNOWN]);

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath)));
const services: DescService[] = [];
for (const file of registry.files) for (const s of file.services) if (s.typeName.startsWith('gantry.')) services.push(s);
/**
 * Every method but the two that change the process under test on purpose: Drain would take its
 * readiness down for good, SetLogLevel could turn on trace logging for the rest of the run (both
 * are covered by services/kit/test/admin.test.ts, bad input included).
 */
const NOT_FUZZED = new Set(['gantry.admin.v1.AdminService.Drain', 'gantry.admin.v1.AdminService.SetLogLevel']);
const methods: DescMethod[] = services.flatMap((s) => s.methods).filter((m) => !NOT_FUZZED.has(`${m.parent.typeName}.${m.name}`));

/** A value for one scalar type: edges and ordinary values, invalid only where the wire allows it. */
function scalar(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('', ' ', 'a'.repeat(300), 'wh_unknown', '../../etc', '\u0000x', '00000000-0000-0000-0000-000000000000'), fc.string({ minLength: 2000, maxLength: 5000 }));
    case ScalarType.BYTES:
      return fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constantFrom(new Uint8Array(32), new Uint8Array(64)), fc.uint8Array({ minLength: 4000, maxLength: 9000 }));
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.constantFrom(0n, 1n, -1n, 1000n));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.constantFrom(0n, 1n, 1000n, 2n ** 63n));
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.nat({ max: 2 ** 32 - 1 }), fc.constantFrom(0, 1, 100, 2 ** 31));
    default:
      return fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.constantFrom(0, 1, -1, 100));
  }
}

/** A value for one field of a message (depth bounds recursion: a Struct holds Values hold Structs). */
function fieldValue(field: DescField, depth: number): fc.Arbitrary<unknown> {
  const single = (kind: 'scalar' | 'enum' | 'message', f: { scalar?: ScalarType; enum?: { values: { number: number }[] }; message?: DescMessage }): fc.Arbitrary<unknown> => {
    if (kind === 'scalar') return scalar(f.scalar!);
    if (kind === 'enum') return fc.oneof(fc.constantFrom(...f.enum!.values.map((v) => v.number)), fc.integer({ min: -5, max: 100 }));
    return depth > 3 ? fc.constant(create(f.message!)) : message(f.message!, depth + 1);
  };
  switch (field.fieldKind) {
    case 'scalar':
      return scalar(field.scalar);
    case 'enum':
      return single('enum', { enum: field.enum });
    case 'message':
      return single('message', { message: field.message });
    case 'list':
      return fc.array(field.listKind === 'scalar' ? scalar(field.scalar!) : single(field.listKind, { enum: field.enum, message: field.message }), { maxLength: depth > 2 ? 1 : 6 });
    case 'map':
      return fc.dictionary(fc.string({ maxLength: 12 }), field.mapKind === 'scalar' ? scalar(field.scalar!) : single(field.mapKind, { enum: field.enum, message: field.message }), { maxKeys: depth > 2 ? 1 : 5 });
  }
}

/** Any message of `desc`: each field set or left unset, one member of each oneof. */
function message(desc: DescMessage, depth = 0): fc.Arbitrary<unknown> {
  const plain = desc.fields.filter((f) => !f.oneof);
  const fields = fc.record(Object.fromEntries(plain.map((f) => [f.localName, fieldValue(f, depth)])), { requiredKeys: [] });
  const oneofs = desc.oneofs.map((o) =>
    fc.option(
      fc.oneof(...o.fields.map((f) => fieldValue(f, depth).map((value) => [o.localName, { case: f.localName, value }] as const))),
      { nil: undefined },
    ),
  );
  return fc.tuple(fields, fc.tuple(...oneofs)).map(([init, chosen]) => {
    const withOneofs: Record<string, unknown> = { ...init };
    for (const c of chosen) if (c) withOneofs[c[0]] = c[1];
    return create(desc, withOneofs as MessageInitShape<DescMessage>);
  });
}

/** The bytes sent: a well-formed message mostly, sometimes mangled the ways a broken or hostile client would. */
function requestBytes(desc: DescMessage): fc.Arbitrary<Uint8Array> {
  const encoded = message(desc).map((m) => toBinary(desc, m as never));
  return fc.oneof(
    { weight: 8, arbitrary: encoded },
    { weight: 1, arbitrary: fc.tuple(encoded, fc.nat()).map(([b, n]) => b.subarray(0, b.length === 0 ? 0 : n % b.length)) },
    { weight: 1, arbitrary: fc.tuple(encoded, fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([b, tail]) => Buffer.concat([b, tail])) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 128 }) },
  );
}

type Auth = { kind: 'all' } | { kind: 'some'; scopes: string[] } | { kind: 'forged' } | { kind: 'none' };

const authArb: fc.Arbitrary<Auth> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ kind: 'all' as const }) },
  { weight: 2, arbitrary: fc.subarray(allScopes(), { maxLength: 3 }).map((scopes) => ({ kind: 'some' as const, scopes })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'forged' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
);
const extraHeaders = fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/).filter((k) => !k.startsWith('grpc-') && !k.endsWith('-bin') && k !== 'authorization' && k !== 'te' && k !== 'content-type'), fc.stringMatching(/^[ -~]{0,40}$/), { maxKeys: 3 });

interface Case {
  method: DescMethod;
  messages: Uint8Array[];
  auth: Auth;
  headers: Record<string, string>;
}

const caseArb: fc.Arbitrary<Case> = fc.constantFrom(...methods).chain((method) =>
  fc.record({
    method: fc.constant(method),
    messages: fc.array(requestBytes(method.input), { minLength: method.methodKind === 'unary' || method.methodKind === 'server_streaming' ? 1 : 0, maxLength: method.methodKind === 'unary' || method.methodKind === 'server_streaming' ? 1 : 4 }),
    auth: authArb,
    headers: extraHeaders,
  }),
);

const raw = { serialize: (b: Uint8Array) => Buffer.from(b), deserialize: (b: Buffer) => b };

/** Sends one case; resolves with the status the server ended it with (OK included). */
function send(client: Client, c: Case, md: Metadata): Promise<{ code: number; details: string }> {
  const path = `/${c.method.parent.typeName}/${c.method.name}`;
  const options = { deadline: Date.now() + CALL_DEADLINE_MS };
  return new Promise((resolve) => {
    const ended = (err: ServiceError | null) => resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: '' });
    switch (c.method.methodKind) {
      case 'unary':
        client.makeUnaryRequest(path, raw.serialize, raw.deserialize, c.messages[0]!, md, options, (err) => ended(err));
        return;
      case 'client_streaming': {
        const call = client.makeClientStreamRequest(path, raw.serialize, raw.deserialize, md, options, (err) => ended(err));
        for (const m of c.messages) call.write(m);
        call.end();
        return;
      }
      case 'server_streaming':
      case 'bidi_streaming': {
        let call;
        if (c.method.methodKind === 'server_streaming') {
          call = client.makeServerStreamRequest(path, raw.serialize, raw.deserialize, c.messages[0]!, md, options);
        } else {
          const duplex = client.makeBidiStreamRequest(path, raw.serialize, raw.deserialize, md, options);
          for (const m of c.messages) duplex.write(m);
          duplex.end();
          call = duplex;
        }
        // A watch or a follow never ends by itself: read a little, then cancel (CANCELLED is ours, not the server's).
        const timer = setTimeout(() => call.cancel(), STREAM_READ_MS);
        call.on('data', () => undefined);
        call.on('error', (err: ServiceError) => (clearTimeout(timer), ended(err)));
        call.on('status', (s: { code: number; details: string }) => {
          clearTimeout(timer);
          if (s.code === status.OK) ended(null);
        });
      }
    }
  });
}

function fuzzEngine(engine: 'PGlite' | 'PostgreSQL', skip: string | false) {
  describe(`fuzzing every RPC on ${engine}`, { skip }, () => {
    let server: GantryServer;
    let client: Client;
    let drop: (() => Promise<void>) | undefined;
    let allToken: string;

    before(async () => {
      // Limits high enough that requests reach the handlers: forged and missing tokens would
      // otherwise get this host refused before authentication (auth.maxFailuresPerPeer) for the rest of the run.
      const env: NodeJS.ProcessEnv = { GANTRY_RATE_LIMIT_POINTS: '1000000', GANTRY_AUTH_MAX_FAILURES_PER_PEER: '100000' };
      if (engine === 'PostgreSQL') {
        const db = await freshPostgresDatabase('t_fuzz');
        env.GANTRY_DATABASE_URL = db.url;
        drop = db.drop;
      }
      server = await startGantry('all', env);
      const pki = join(server.dataDir, 'pki');
      client = new Client(`127.0.0.1:${server.port}`, credentials.createSsl(readFileSync(join(pki, 'ca.crt')), readFileSync(join(pki, 'client.key')), readFileSync(join(pki, 'client.crt'))), {
        'grpc.ssl_target_name_override': 'localhost',
        'grpc.default_authority': 'localhost',
        'grpc.max_send_message_length': 64 * 1024 * 1024,
      });
      allToken = tokenFor(server.dataDir, 'fuzzer', allScopes(), { ttlSec: 3600 });
    });
    after(async () => {
      client?.close();
      await server?.stop();
      await drop?.();
    });

    test('cases the fuzzer found are refused as INVALID_ARGUMENT, not INTERNAL: text with NUL and uint64 versions past int8', async () => {
      const md = new Metadata();
      md.set('authorization', `Bearer ${allToken}`);
      const call = async (typeName: string, methodName: string, init: Record<string, unknown>) => {
        const method = methods.find((m) => m.parent.typeName === typeName && m.name === methodName)!;
        return send(client, { method, messages: [toBinary(method.input, create(method.input, init as MessageInitShape<DescMessage>))], auth: { kind: 'all' }, headers: {} }, md);
      };
      // An approval id holding NUL reached a query (PostgreSQL text cannot hold NUL: SQLSTATE 22021).
      const nul = await call('gantry.approvals.v1.ApprovalsService', 'GetApprovalStatus', { approvalId: '\u0000x' });
      assert.equal(status[nul.code], 'INVALID_ARGUMENT', nul.details);
      // A registry watch from a version past int8 reached a query (SQLSTATE 22003).
      const huge = await call('gantry.webhooks.v1.WebhooksService', 'WatchWebhookRegistry', { fromVersion: 2n ** 64n - 1n });
      assert.ok(['INVALID_ARGUMENT', 'OUT_OF_RANGE'].includes(status[huge.code]!), `${status[huge.code]}: ${huge.details}`);
      // Timestamps past the year 9999 decoded as Invalid Date and threw in the handlers.
      const farFuture = { seconds: 10n ** 15n, nanos: 0 };
      for (const [service, method, init, field] of [
        ['gantry.approvals.v1.ApprovalsService', 'ListApprovals', { createdAfter: farFuture }, 'created_after'],
        ['gantry.webhooks.v1.WebhooksService', 'GetDeliveryHistory', { since: farFuture }, 'since'],
        ['gantry.webhooks.v1.WebhooksService', 'RetryFailedDeliveries', { webhookId: 'wh_x', selector: { case: 'since', value: farFuture } }, 'since'],
      ] as const) {
        const answer = await call(service, method, init);
        assert.equal(status[answer.code], 'INVALID_ARGUMENT', `${method}: ${answer.details}`);
        assert.match(answer.details, new RegExp(`^${field}: is not a valid time`));
      }
    });

    test(`${RUNS} random requests over ${methods.length} methods of ${services.length} services: no INTERNAL or UNKNOWN, no crash, SERVING after`, { timeout: 20 * 60_000 }, async () => {
      const md = (c: Case) => {
        const m = new Metadata();
        for (const [k, v] of Object.entries(c.headers)) m.set(k, v);
        if (c.auth.kind === 'all') m.set('authorization', `Bearer ${allToken}`);
        if (c.auth.kind === 'some') m.set('authorization', `Bearer ${tokenFor(server.dataDir, 'fuzzer-some', c.auth.scopes)}`);
        if (c.auth.kind === 'forged') m.set('authorization', `Bearer ${allToken.slice(0, -8)}AAAAAAAA`);
        return m;
      };
      const codes = new Map<number, number>();
      const byMethod = new Set<string>();
      let sent = 0;
      // Batches of PARALLEL cases, each an fc.asyncProperty run: a fault fails the property, and
      // fast-check shrinks it to a small request and prints the seed that replays it.
      await fc.assert(
        fc.asyncProperty(fc.array(caseArb, { minLength: PARALLEL, maxLength: PARALLEL }), async (batch) => {
          const answers = await Promise.all(batch.map((c) => send(client, c, md(c))));
          answers.forEach((a, i) => {
            sent++;
            codes.set(a.code, (codes.get(a.code) ?? 0) + 1);
            byMethod.add(batch[i]!.method.name);
            if (SERVER_FAULTS.has(a.code)) {
              // The answer names a reference; the server's log line with it says what failed.
              const ref = /reference ([0-9a-f]+)/.exec(a.details)?.[1];
              const logged = ref ? server.logs.join('\n').split('\n').find((l) => l.includes(ref)) : undefined;
              throw new Error(`${batch[i]!.method.parent.name}/${batch[i]!.method.name} answered ${status[a.code]}: ${a.details}\nserver log: ${logged?.slice(0, 2000)}`);
            }
          });
          assert.equal(server.child.exitCode, null, 'the server process is alive');
        }),
        { numRuns: Math.ceil(RUNS / PARALLEL), seed: SEED, endOnFailure: true, includeErrorInReport: true },
      );
      const summary = [...codes].sort(([a], [b]) => a - b).map(([code, n]) => `${status[code]} ${n}`).join(', ');
      process.stderr.write(`fuzz ${engine} (seed ${SEED}): ${sent} requests, ${byMethod.size} of ${methods.length} methods; ${summary}\n`);
      assert.ok(byMethod.size >= Math.min(methods.length, 20), `the runs reached ${byMethod.size} methods`);
      assert.ok((codes.get(status.OK) ?? 0) > 0, 'some requests were well-formed enough to succeed');
      assert.ok((codes.get(status.RESOURCE_EXHAUSTED) ?? 0) < sent / 10, 'the requests reached the services, not only their limits');
      assert.equal((await checkHealth(`127.0.0.1:${server.healthPort}`, credentials.createInsecure(), 'readiness')).status, 'SERVING');
      assert.equal(server.child.exitCode, null);
    });
  });
}

fuzzEngine('PGlite', false);
fuzzEngine('PostgreSQL', postgresSkip());
