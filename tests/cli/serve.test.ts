import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runGantry, startGantry, type GantryServer } from '../support/gantry-process.js';
import { run, tool } from '../support/tools.js';

const grpcurl = tool('grpcurl');
const healthProbe = tool('grpc-health-probe');

describe('gantry serve --target=all (the README start command) checked by clients no one here wrote', () => {
  let server: GantryServer;
  let pki: { ca: string; cert: string; key: string };
  let token: string;
  let webhooksToken: string;

  before(async () => {
    server = await startGantry('all');
    pki = { ca: join(server.dataDir, 'pki/ca.crt'), cert: join(server.dataDir, 'pki/client.crt'), key: join(server.dataDir, 'pki/client.key') };
    const minted = await runGantry(['token', '--scope', 'log.read', '--subject', 'e2e'], server.env);
    assert.equal(minted.code, 0, minted.stderr);
    token = minted.stdout.trim();
    const forWebhooks = await runGantry(['token', '--scope', 'webhooks.read', '--subject', 'e2e'], server.env);
    assert.equal(forWebhooks.code, 0, forWebhooks.stderr);
    webhooksToken = forWebhooks.stdout.trim();
  });
  after(async () => {
    await server?.stop();
  });

  const tlsArgs = () => ['-cacert', pki.ca, '-cert', pki.cert, '-key', pki.key, '-servername', 'localhost'];

  test('grpc-health-probe sees SERVING on the plaintext probe port', { skip: !healthProbe && 'grpc-health-probe not installed' }, async () => {
    const res = await run(healthProbe!, ['-addr', `127.0.0.1:${server.healthPort}`]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout + res.stderr, /SERVING/);
  });

  test('grpc-health-probe sees SERVING over mTLS, for the whole server and per service', { skip: !healthProbe && 'grpc-health-probe not installed' }, async () => {
    const tls = ['-tls', '-tls-ca-cert', pki.ca, '-tls-client-cert', pki.cert, '-tls-client-key', pki.key, '-tls-server-name', 'localhost'];
    for (const service of ['', 'gantry.log.v1.LogService', 'gantry.webhooks.v1.WebhooksService']) {
      const res = await run(healthProbe!, ['-addr', `127.0.0.1:${server.port}`, ...tls, '-service', service]);
      assert.equal(res.code, 0, `service "${service}": ${res.stderr}`);
    }
  });

  test('the mTLS port refuses a health probe without a client certificate', { skip: !healthProbe && 'grpc-health-probe not installed' }, async () => {
    const res = await run(healthProbe!, ['-addr', `127.0.0.1:${server.port}`, '-tls', '-tls-ca-cert', pki.ca, '-tls-server-name', 'localhost', '-connect-timeout', '3s']);
    assert.notEqual(res.code, 0);
  });

  test('gantry health answers SERVING over mTLS and on the probe port (exit 0), and an unknown service exits 1 naming it', async () => {
    const mtls = ['--ca', pki.ca, '--cert', pki.cert, '--key', pki.key, '--server-name', 'localhost'];
    const whole = await runGantry(['health', '--address', `127.0.0.1:${server.port}`, ...mtls], server.env);
    assert.equal(whole.code, 0, whole.stderr);
    assert.match(whole.stdout, /server at 127\.0\.0\.1:\d+: SERVING/);
    const one = await runGantry(['health', '--address', `127.0.0.1:${server.port}`, ...mtls, '--service', 'gantry.settlement.v1.SettlementService', '--json'], server.env);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(JSON.parse(one.stdout).status, 'SERVING');
    const probe = await runGantry(['health', '--plaintext', '--address', `127.0.0.1:${server.healthPort}`], server.env);
    assert.equal(probe.code, 0, probe.stderr);
    const unknown = await runGantry(['health', '--plaintext', '--address', `127.0.0.1:${server.healthPort}`, '--service', 'gantry.nope.v1.Nope'], server.env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /gantry\.nope\.v1\.Nope at .*gRPC status 5/);
  });

  test('grpcurl lists every service through reflection, with no .proto files', { skip: !grpcurl && 'grpcurl not installed' }, async () => {
    const res = await run(grpcurl!, [...tlsArgs(), `127.0.0.1:${server.port}`, 'list']);
    assert.equal(res.code, 0, res.stderr);
    for (const name of ['gantry.log.v1.LogService', 'gantry.settlement.v1.SettlementService', 'gantry.approvals.v1.ApprovalsService', 'gantry.webhooks.v1.WebhooksService', 'gantry.flags.v1.FlagsService', 'gantry.admin.v1.AdminService', 'grpc.health.v1.Health']) {
      assert.match(res.stdout, new RegExp(name.replaceAll('.', '\\.')));
    }
    const described = await run(grpcurl!, [...tlsArgs(), `127.0.0.1:${server.port}`, 'describe', 'gantry.log.v1.LogService.Append']);
    assert.equal(described.code, 0, described.stderr);
    assert.match(described.stdout, /rpc Append/);
  });

  test('AdminService.GetInfo through grpcurl, with an admin token only: the version, the commit and every target of the process', { skip: !grpcurl && 'grpcurl not installed' }, async () => {
    const method = 'gantry.admin.v1.AdminService/GetInfo';
    const refused = await run(grpcurl!, [...tlsArgs(), '-H', `authorization: Bearer ${token}`, '-d', '{}', `127.0.0.1:${server.port}`, method]);
    assert.match(refused.stderr, /Code: PermissionDenied/);
    const minted = await runGantry(['token', '--scope', 'admin', '--subject', 'ops'], server.env);
    assert.equal(minted.code, 0, minted.stderr);
    const res = await run(grpcurl!, [...tlsArgs(), '-H', `authorization: Bearer ${minted.stdout.trim()}`, '-d', '{}', `127.0.0.1:${server.port}`, method]);
    assert.equal(res.code, 0, res.stderr);
    const info = JSON.parse(res.stdout) as { version: string; commit: string; targets: string[]; engine: string; configDigest: string };
    const version = await runGantry(['--version'], server.env);
    assert.equal(version.stdout.trim(), `gantry ${info.version} (commit ${info.commit})`);
    assert.deepEqual(info.targets, ['log', 'settlement', 'approvals', 'webhooks']);
    assert.match(info.configDigest, /^sha256:[0-9a-f]{64}$/);

    // The same through `gantry admin`, which mints its own dev token with the admin scope.
    const admin = (args: string[]) => runGantry(['admin', ...args, '--address', `127.0.0.1:${server.port}`], server.env);
    const cli = await admin(['info', '--json']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal((JSON.parse(cli.stdout) as { configDigest: string }).configDigest, info.configDigest);
    const human = await admin(['info']);
    assert.match(human.stdout, new RegExp(`^gantry ${info.version.replaceAll('.', '\\.')} \\(commit ${info.commit}\\)`));
    const set = await admin(['log-level', 'debug', '--for', '2s']);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /^log level debug until \S+ \(was info; it returns on its own\)/);
    const bad = await admin(['log-level', 'debug', '--for', 'soon']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--for must be a whole number with a unit .*e\.g\. 90s.*got "soon"/);
    const tooLong = await admin(['log-level', 'debug', '--for', '25h']);
    assert.match(tooLong.stderr, /INVALID_ARGUMENT: duration: must be between 1 s and 24 h/);
  });

  test('grpcurl calls services: no token is UNAUTHENTICATED, a scoped token reaches the handler, a wrong scope is PERMISSION_DENIED', { skip: !grpcurl && 'grpcurl not installed' }, async () => {
    const method = 'gantry.log.v1.LogService/ListPartitions';
    const anonymous = await run(grpcurl!, [...tlsArgs(), '-d', '{}', `127.0.0.1:${server.port}`, method]);
    assert.match(anonymous.stderr, /Code: Unauthenticated/);
    const authorized = await run(grpcurl!, [...tlsArgs(), '-H', `authorization: Bearer ${token}`, '-d', '{"prefix":"none-"}', `127.0.0.1:${server.port}`, method]);
    assert.equal(authorized.code, 0, authorized.stderr);
    assert.deepEqual(JSON.parse(authorized.stdout), {}, 'no partition matches the prefix: an empty response');
    // The webhooks.read token reaches the webhooks handler, which checks the request: an unknown id is NOT_FOUND.
    const webhooks = await run(grpcurl!, [...tlsArgs(), '-H', `authorization: Bearer ${webhooksToken}`, '-d', '{"webhook_id":"wh_unknown"}', `127.0.0.1:${server.port}`, 'gantry.webhooks.v1.WebhooksService/GetWebhook']);
    assert.match(webhooks.stderr, /Code: NotFound/);
    assert.match(webhooks.stderr, /wh_unknown does not exist/);
    const wrongScope = await run(grpcurl!, [...tlsArgs(), '-H', `authorization: Bearer ${token}`, '-d', '{}', `127.0.0.1:${server.port}`, 'gantry.log.v1.LogService/Append']);
    assert.match(wrongScope.stderr, /Code: PermissionDenied/);
    assert.match(wrongScope.stderr, /log\.append/);
  });

  test('SIGTERM stops the server with exit code 0', async () => {
    const code = await server.stop();
    assert.equal(code, 0, server.logs.join(''));
  });
});

describe('gantry CLI errors say what to do next', () => {
  test('an unknown target is refused with the list of targets', async () => {
    const res = await runGantry(['serve', '--target=nope']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /Allowed choices are log, settlement, approvals, webhooks, gateway, all/);
  });

  test('a bad environment value names the variable and the key', async () => {
    const res = await runGantry(['serve'], { GANTRY_LISTEN_PORT: 'eighty' });
    assert.equal(res.code, 2);
    assert.match(res.stderr, /GANTRY_LISTEN_PORT \(listen\.port\)/);
  });

  test('gantry token without a scope explains how to ask for one', async () => {
    const res = await runGantry(['token'], { GANTRY_DATA_DIR: '/tmp/gantry-token-test' });
    assert.equal(res.code, 2);
    assert.match(res.stderr, /--scope/);
  });
});
