// AdminService on every serving process: what the process is, its log level for a
// while, draining, and grpc-js's channelz; all behind the admin scope, with bad input refused and secrets kept out.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, getChannelzServiceDefinition, makeGenericClientConstructor, Metadata, status, type ChannelCredentials } from '@grpc/grpc-js';
import { adminv1 } from '@gantry/proto';
import { ADMIN_SCOPE, buildInfo, devPkiPaths, digestOf, loadConfig, READINESS, startRuntime, type GantryConfig, type Runtime } from '../src/index.js';
import { echoFactory } from '@gantry/test-support/echo';
import { assertStatus, bearer, callEcho, capturingLogger, checkHealth, echoClient, eventually, freshPgliteDir, tokenFor, type LogLine } from '@gantry/test-support/harness';

const TLS_NAME = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };
type Unary<Req, Res> = (req: Req, md: Metadata, cb: (err: Error | null, res?: Res) => void) => void;
const call = <Req, Res>(fn: Unary<Req, Res>, req: Req, md: Metadata) => new Promise<Res>((resolve, reject) => fn(req, md, (err, res) => (err ? reject(err) : resolve(res!))));
const rpc = <Req, Res>(client: adminv1.AdminServiceClient, method: 'getInfo' | 'setLogLevel' | 'drain') => (req: Req, md: Metadata) => call(client[method].bind(client) as unknown as Unary<Req, Res>, req, md);

describe('AdminService', () => {
  let dataDir: string;
  let config: GantryConfig;
  let runtime: Runtime;
  let creds: ChannelCredentials;
  let admin: adminv1.AdminServiceClient;
  let lines: LogLine[];
  let getInfo: (req: adminv1.GetInfoRequest, md: Metadata) => Promise<adminv1.GetInfoResponse>;
  let setLogLevel: (req: adminv1.SetLogLevelRequest, md: Metadata) => Promise<adminv1.SetLogLevelResponse>;
  let drain: (req: adminv1.DrainRequest, md: Metadata) => Promise<adminv1.DrainResponse>;
  const token = (scopes: string[]) => bearer(tokenFor(dataDir, 'ops', scopes, { issuer: config.auth.issuer, audience: config.auth.audience }));
  const asAdmin = () => token([ADMIN_SCOPE]);

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'gantry-admin-'));
    config = loadConfig({ env: { GANTRY_AUTH_DEV_ISSUER: 'true' }, overrides: { dataDir, listen: { host: '127.0.0.1', port: 0, healthPort: 0 } } });
    await freshPgliteDir(join(dataDir, 'db'));
    const captured = capturingLogger();
    lines = captured.lines;
    runtime = await startRuntime({ config, modules: [echoFactory], log: captured.log, readinessIntervalMs: 200 });
    const pki = devPkiPaths(join(dataDir, 'pki'));
    creds = credentials.createSsl(readFileSync(pki.caFile), readFileSync(pki.clientKeyFile), readFileSync(pki.clientCertFile));
    admin = new adminv1.AdminServiceClient(`127.0.0.1:${runtime.port}`, creds, TLS_NAME);
    getInfo = rpc(admin, 'getInfo');
    setLogLevel = rpc(admin, 'setLogLevel');
    drain = rpc(admin, 'drain');
  });
  after(async () => {
    admin?.close();
    await runtime?.stop(1000);
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('GetInfo names the program, its targets and engine, its uptime and a digest of its configuration', async () => {
    const info = await getInfo({}, asAdmin());
    assert.equal(info.version, buildInfo().version);
    assert.equal(info.commit, buildInfo().commit);
    assert.deepEqual(info.targets, ['echo']);
    assert.equal(info.engine, 'pglite');
    assert.ok(info.startedAt && info.startedAt.getTime() <= Date.now());
    assert.ok(info.uptime && info.uptime.seconds >= 0n);
    assert.equal(info.configDigest, digestOf(config));
    assert.match(info.configDigest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(info.logLevel, 'info');
    assert.equal(info.logLevelUntil, undefined);
    assert.equal(info.draining, false);
    assert.equal(info.runtime, process.version);
  });

  test('every admin method needs the admin scope: no token is UNAUTHENTICATED, another scope PERMISSION_DENIED', async () => {
    await assertStatus(getInfo({}, new Metadata()), status.UNAUTHENTICATED);
    await assertStatus(getInfo({}, token(['flags.write', 'echo.read'])), status.PERMISSION_DENIED, /admin/);
    await assertStatus(drain({}, token(['echo.read'])), status.PERMISSION_DENIED);
    await assertStatus(setLogLevel({ level: 'debug', duration: { seconds: 5n, nanos: 0 } }, token([])), status.PERMISSION_DENIED);
  });

  test("channelz lists this process's servers and their listen sockets behind the admin scope; an unknown id is NOT_FOUND", async () => {
    const Channelz = makeGenericClientConstructor(getChannelzServiceDefinition() as never, 'Channelz');
    const channelz = new Channelz(`127.0.0.1:${runtime.port}`, creds, TLS_NAME) as unknown as Record<string, Unary<object, Record<string, unknown>>>;
    const ask = (method: string, req: object, md: Metadata) => call(channelz[method]!.bind(channelz), req, md);
    try {
      await assertStatus(ask('GetServers', {}, new Metadata()), status.UNAUTHENTICATED);
      await assertStatus(ask('GetServers', {}, token(['echo.read'])), status.PERMISSION_DENIED, /admin/);
      const { server } = (await ask('GetServers', {}, asAdmin())) as { server: { listen_socket: { name: string }[]; data: { calls_started: string } }[] };
      const ports = server.flatMap((s) => s.listen_socket.map((l) => l.name));
      assert.ok(ports.some((name) => name.endsWith(`:${runtime.port}`)), `the mTLS port is listed: ${ports.join(', ')}`);
      assert.ok(server.some((s) => Number(s.data.calls_started) > 0), 'its calls are counted');
      await assertStatus(ask('GetChannel', { channel_id: '999999' }, asAdmin()), status.NOT_FOUND, /No channel data found/);
    } finally {
      (channelz as unknown as { close(): void }).close();
    }
  });

  test('SetLogLevel changes every component’s level for the time asked, then the configured level returns on its own', async () => {
    const set = await setLogLevel({ level: 'DEBUG', duration: { seconds: 1n, nanos: 0 } }, asAdmin());
    assert.equal(set.previousLevel, 'info');
    assert.equal(set.level, 'debug');
    const info = await getInfo({}, asAdmin());
    assert.equal(info.logLevel, 'debug');
    assert.ok(info.logLevelUntil && info.logLevelUntil.getTime() > Date.now() - 100);
    assert.ok(lines.some((l) => /log level changed/.test(l.msg) && l.by === 'ops' && l.to_level === 'debug' && l.level === 40), `the change is logged with who made it: ${JSON.stringify(lines.slice(-3))}`);
    assert.ok(await eventually(async () => (await getInfo({}, asAdmin())).logLevel === 'info', 5000), 'back to info after the second');
    assert.equal((await getInfo({}, asAdmin())).logLevelUntil, undefined);
  });

  test('SetLogLevel refuses an unknown level and a duration outside 1 s to 24 h, and changes nothing', async () => {
    await assertStatus(setLogLevel({ level: 'verbose', duration: { seconds: 60n, nanos: 0 } }, asAdmin()), status.INVALID_ARGUMENT, /level: must be one of trace, debug/);
    await assertStatus(setLogLevel({ level: 'debug', duration: undefined }, asAdmin()), status.INVALID_ARGUMENT, /duration: must be between 1 s and 24 h/);
    await assertStatus(setLogLevel({ level: 'debug', duration: { seconds: 25n * 3600n, nanos: 0 } }, asAdmin()), status.INVALID_ARGUMENT, /duration/);
    assert.equal((await getInfo({}, asAdmin())).logLevel, 'info');
  });

  test('Drain turns readiness NOT_SERVING for good while calls are still served; a second Drain says it already was', async () => {
    const echo = echoClient(`127.0.0.1:${runtime.port}`, creds);
    try {
      assert.equal((await checkHealth(`127.0.0.1:${runtime.healthPort}`, credentials.createInsecure(), READINESS)).status, 'SERVING');
      assert.deepEqual(await drain({}, asAdmin()), { newlyDraining: true });
      assert.equal((await checkHealth(`127.0.0.1:${runtime.healthPort}`, credentials.createInsecure(), READINESS)).status, 'NOT_SERVING');
      const { res } = await callEcho(echo, { message: 'still here' }, token(['echo.read']));
      assert.equal(res?.message, 'still here');
      assert.equal((await getInfo({}, asAdmin())).draining, true);
      assert.deepEqual(await drain({}, asAdmin()), { newlyDraining: false });
      await new Promise((resolve) => setTimeout(resolve, 400)); // two readiness checks: they do not undo it
      assert.equal((await checkHealth(`127.0.0.1:${runtime.healthPort}`, credentials.createInsecure(), READINESS)).status, 'NOT_SERVING');
    } finally {
      echo.close();
    }
  });
});

test('the configuration digest leaves secrets out: a different password or secret gives the same digest, any other setting another', () => {
  const base = { database: { url: 'postgres://gantry:hunter2@db:5432/gantry' }, webhooks: { signingSecret: 'whsec_abc', maxAttempts: 5 }, auth: { jwksFile: '/etc/keys/jwks.json' } };
  const d = digestOf(base);
  assert.equal(digestOf({ ...base, database: { url: 'postgres://gantry:other@db:5432/gantry' } }), d);
  assert.equal(digestOf({ ...base, webhooks: { ...base.webhooks, signingSecret: 'whsec_xyz' } }), d);
  assert.equal(digestOf({ auth: base.auth, webhooks: base.webhooks, database: base.database }), d, 'key order does not matter');
  assert.notEqual(digestOf({ ...base, webhooks: { ...base.webhooks, maxAttempts: 6 } }), d);
  assert.notEqual(digestOf({ ...base, database: { url: 'postgres://gantry:hunter2@db2:5432/gantry' } }), d);
  assert.notEqual(digestOf({ ...base, auth: { jwksFile: '/etc/keys/other.json' } }), d, 'a path to a key file is not a secret');
});
