// The gantry image as a cluster runs it: each target in its own container (read-only root
// filesystem, non-root, no capabilities) on one network, reaching its peers by DNS names like the
// chart's Services, against PostgreSQL in a container, with mTLS and JWTs from mounted files.
// Then SIGTERM to a container with calls in flight: it drains them and exits 0 (Node as PID 1).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GenericContainer, Network, Wait, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import { unary } from '@gantry/kit';
import { eventually } from '@gantry/test-support/clients';
import { about, APPROVAL_FLOW_TYPES, PlatformClients, SETTLEMENT_FLOW_TYPES } from '../platform/support.js';
import { ALIASES, BUILD_TIMEOUT_MS, buildGantryImage, buildPostgresImage, dockerSkip, exitCode, HardenedContainer, makeMaterial, removeContainer, requireDocker, secretsEnv, type Material } from './support.js';

const TARGETS = ['log', 'settlement', 'approvals', 'webhooks'] as const;
const WAIT_MS = 30_000;
const SERVING = Wait.forLogMessage(/gantry is serving/);
const skip = dockerSkip();

if (process.env.CI === 'true') {
  test('a Docker engine answers for the container tests', () => requireDocker());
}

describe('the gantry image: one container per target on PostgreSQL, wired by DNS names', { skip, timeout: BUILD_TIMEOUT_MS + 120_000 }, () => {
  let image: string;
  let material: Material;
  let network: StartedNetwork;
  const started: StartedTestContainer[] = [];
  const byTarget = new Map<string, StartedTestContainer>();
  let clients: PlatformClients;

  before(async () => {
    image = buildGantryImage();
    const pgImage = buildPostgresImage();
    material = await makeMaterial();
    network = await new Network().start();
    const pg = await new GenericContainer(pgImage).withNetwork(network).withNetworkAliases('gantry-pg')
      .withWaitStrategy(Wait.forLogMessage(/ready to accept connections/)).start();
    started.push(pg);
    const env = {
      ...secretsEnv(),
      GANTRY_DATABASE_URL: 'postgres://gantry@gantry-pg:5432/postgres',
      GANTRY_PEERS_LOG_ADDRESS: `dns:///${ALIASES.log}:7443`,
      GANTRY_PEERS_WEBHOOKS_ADDRESS: `dns:///${ALIASES.webhooks}:7443`,
      GANTRY_RATE_LIMIT_POINTS: '100000',
    };
    // One at a time: the first migrations of each schema run while no other target is starting.
    for (const target of TARGETS) {
      const c = await new HardenedContainer(image, material).withNetwork(network).withNetworkAliases(ALIASES[target])
        .withEnvironment(env).withCommand(['serve', `--target=${target}`]).withExposedPorts(7443, 7080)
        .withWaitStrategy(SERVING).withStartupTimeout(60_000).start();
      started.push(c);
      byTarget.set(target, c);
    }
    const at = (t: string) => `localhost:${byTarget.get(t)!.getMappedPort(7443)}`;
    clients = new PlatformClients({ log: at('log'), settlement: at('settlement'), approvals: at('approvals'), webhooks: at('webhooks') }, material.tls, material.dir);
  }, { timeout: BUILD_TIMEOUT_MS + 60_000 });

  after(async () => {
    clients?.close();
    for (const c of started.reverse()) removeContainer(c.getId());
    await network?.stop();
  });

  test('a settlement flow and an approval flow through the mapped ports reach the audit trail in the log container', async () => {
    const sessionId = await clients.settlementFlow();
    const approvalId = await clients.approvalFlow();
    const audited = async () => ({ settlement: about(await clients.audit('audit.settlement'), sessionId), approvals: about(await clients.audit('audit.approvals'), approvalId) });
    const complete = async () => {
      const a = await audited();
      return a.settlement.length >= SETTLEMENT_FLOW_TYPES.length && a.approvals.length >= APPROVAL_FLOW_TYPES.length;
    };
    assert.ok(await eventually(complete, WAIT_MS), `audit entries missing: ${JSON.stringify(await audited(), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
    const a = await audited();
    assert.deepEqual(a.settlement.map((e) => e.type), SETTLEMENT_FLOW_TYPES);
    assert.deepEqual(a.approvals.map((e) => e.type), APPROVAL_FLOW_TYPES);
    for (const partition of ['audit.settlement', 'audit.approvals']) {
      const v = await clients.verify(partition);
      assert.equal(v.valid, true, `${partition}: ${v.reason}`);
    }
  });

  test('the containers run as uid 10001 on a read-only root filesystem', async () => {
    const c = byTarget.get('log')!;
    const id = await c.exec(['node', '-e', "try { require('fs').writeFileSync('/app/x', 'x'); console.log('wrote') } catch (e) { console.log(e.code) } console.log(process.getuid())"]);
    assert.deepEqual(id.output.trim().split('\n'), ['EROFS', '10001']);
  });

  test('the image names the release and the commit it was built from (gantry --version)', async () => {
    const c = byTarget.get('log')!;
    const { output, exitCode: code } = await c.exec(['node', '--experimental-async-context-frame', '--heap-growing-percent=100', '/app/gantry.mjs', '--version']);
    assert.equal(code, 0, output);
    const root = new URL('../..', import.meta.url);
    const version = (JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { version: string }).version;
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    assert.match(output.trim(), new RegExp(`^gantry ${version.replaceAll('.', '\\.')} \\(commit ${head}(-dirty)?\\)$`));
  });

  test('SIGTERM with unary calls in flight: every call succeeds, the container drains and exits 0', async () => {
    const log = byTarget.get('log')!;
    const c = clients.log;
    const md = clients.as('drain-test', ['log.append']);
    // Fewer than the server's streams per connection (limits.maxConcurrentStreams, 100): calls past
    // it wait in the client, not on the wire, and a draining server is right to refuse them then.
    const CALLS = 90;
    let doneBeforeStop = 0;
    let stopping = false;
    const calls = Array.from({ length: CALLS }, (_, i) =>
      unary(c.append, c, { partition: 'drain.test', data: Buffer.from(`call ${i}`), idempotencyKey: '' }, md).then(
        () => { if (!stopping) doneBeforeStop += 1; return 'ok'; },
        (err: Error) => err.message,
      ));
    // Every request is on the wire once the first answer is back; the rest are in flight.
    await Promise.race(calls);
    stopping = true;
    const stopped = log.stop({ timeout: 20_000, remove: false });
    const results = await Promise.all(calls);
    await stopped;
    const failed = results.filter((r) => r !== 'ok');
    assert.deepEqual(failed, [], `${failed.length} of ${CALLS} calls failed during the drain`);
    assert.ok(doneBeforeStop < CALLS, 'no call was in flight when SIGTERM was sent; the test proved nothing');
    assert.equal(exitCode(log.getId()), 0, 'exit code after SIGTERM (137 would mean it was killed after the timeout)');
  });
});
