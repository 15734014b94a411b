// The platform as separate processes on one PostgreSQL database (one `gantry serve --target=…` per
// service, wired by address the way the chart wires them by DNS): the log is killed with SIGKILL
// and the webhooks target stopped in the middle of the flows, and restarted later. The outbox
// relays back off, catch up when their peer returns, and nothing is lost or duplicated.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { eventually } from '@gantry/test-support/clients';
import { freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { startGantry, type GantryServer } from '../support/gantry-process.js';
import { about, APPROVAL_FLOW_TYPES, assertUnique, PlatformClients, Receiver, SETTLEMENT_FLOW_TYPES, SUBSCRIBER } from './support.js';

requirePostgresInCi('the platform outage tests');

const WAIT_MS = 60_000;

describe('the platform as one process per service: peers stopped mid-flow and restarted', { skip: postgresSkip() }, () => {
  const receiver = new Receiver();
  let database: Awaited<ReturnType<typeof freshPostgresDatabase>>;
  const servers: Record<'log' | 'webhooks' | 'settlement' | 'approvals', GantryServer | undefined> = { log: undefined, webhooks: undefined, settlement: undefined, approvals: undefined };
  let dataDir: string;
  let baseEnv: NodeJS.ProcessEnv;
  let clients: PlatformClients;
  let secret: string;
  const ports = { log: 0, webhooks: 0 };

  /** Starts a target on the shared data dir (dev CA, JWT key, log and webhook keys) and database. */
  const start = async (target: keyof typeof servers, port = 0) => {
    const server = await startGantry(target, { ...baseEnv, GANTRY_DATA_DIR: dataDir, GANTRY_LISTEN_PORT: String(port) });
    servers[target] = server;
    return server;
  };

  before(async () => {
    await receiver.start();
    database = await freshPostgresDatabase('t_platform');
    baseEnv = {
      GANTRY_DATABASE_URL: database.url,
      GANTRY_DATABASE_POOL_SIZE: '4',
      GANTRY_RATE_LIMIT_POINTS: '100000',
      GANTRY_WEBHOOKS_ALLOWED_CIDRS: `${SUBSCRIBER}=127.0.0.1/32`,
      GANTRY_WEBHOOKS_POLL_INTERVAL_MS: '100',
      GANTRY_EVENTS_MAX_BACKOFF_MS: '1000',
      GANTRY_LIMITS_SHUTDOWN_GRACE_MS: '5000',
    };
    // The first process creates the shared keys; the others start after it, so none races it.
    const log = await startGantry('log', baseEnv);
    servers.log = log;
    dataDir = log.dataDir;
    ports.log = log.port;
    ports.webhooks = (await start('webhooks')).port;
    // The log by a DNS name, as the chart wires a headless Service (round_robin over what it resolves to).
    baseEnv.GANTRY_PEERS_LOG_ADDRESS = `dns:///localhost:${ports.log}`;
    baseEnv.GANTRY_PEERS_WEBHOOKS_ADDRESS = `127.0.0.1:${ports.webhooks}`;
    await start('settlement');
    await start('approvals');
    const pki = (f: string) => join(dataDir, 'pki', f);
    const at = (t: keyof typeof servers) => `127.0.0.1:${servers[t]!.port}`;
    clients = new PlatformClients(
      { settlement: at('settlement'), approvals: at('approvals'), webhooks: at('webhooks'), log: at('log') },
      { caFile: pki('ca.crt'), certFile: pki('client.crt'), keyFile: pki('client.key'), serverName: 'localhost' },
      dataDir,
    );
    secret = await clients.subscribe(receiver.url);
  });

  after(async () => {
    clients?.close();
    // The log last: its stop() removes the shared data dir.
    for (const t of ['approvals', 'settlement', 'webhooks', 'log'] as const) await servers[t]?.stop();
    await database?.drop();
    await receiver.stop();
  });

  test('log killed (SIGKILL) and webhooks stopped mid-flow: after their restarts every event is delivered once and audited once, in a valid chain', async () => {
    const sessions: string[] = [];
    const approvals: string[] = [];
    const flows = async () => {
      sessions.push(await clients.settlementFlow());
      approvals.push(await clients.approvalFlow());
    };
    await flows();

    // The log dies without a chance to finish anything; the services keep serving.
    servers.log!.child.kill('SIGKILL');
    await new Promise((r) => servers.log!.child.once('exit', r));
    await flows();
    // Webhooks still get the events while the audit trail waits in the outboxes.
    const deliveredAbout = (ids: string[]) => receiver.events(secret).filter((r) => ids.includes(r.event.subject));
    const perRound = SETTLEMENT_FLOW_TYPES.length + APPROVAL_FLOW_TYPES.length;
    assert.ok(await eventually(() => deliveredAbout([...sessions, ...approvals]).length >= 2 * perRound, WAIT_MS), 'webhook deliveries stopped while the log was down');

    await start('log', ports.log);
    // Now webhooks is stopped (SIGTERM: it drains its attempts) while flows go on.
    // (Not stop(): that removes the shared data dir.)
    const webhooksExit = new Promise<number | null>((r) => servers.webhooks!.child.once('exit', r));
    servers.webhooks!.child.kill('SIGTERM');
    assert.equal(await webhooksExit, 0);
    await flows();
    await start('webhooks', ports.webhooks);
    await flows();

    const rounds = sessions.length;
    const expected = rounds * perRound;
    assert.ok(await eventually(() => deliveredAbout([...sessions, ...approvals]).length >= expected, WAIT_MS), `receiver got ${deliveredAbout([...sessions, ...approvals]).length} of ${expected} events`);
    const audit = async () => [...(await clients.audit('audit.settlement')), ...(await clients.audit('audit.approvals'))];
    assert.ok(await eventually(async () => (await audit()).length >= expected, WAIT_MS), 'audit entries are missing');

    const delivered = deliveredAbout([...sessions, ...approvals]).map((r) => r.event);
    const audited = await audit();
    assertUnique(delivered.map((e) => e.id), 'webhook deliveries');
    assertUnique(audited.map((e) => e.id), 'audit entries');
    assert.equal(delivered.length, expected);
    assert.equal(audited.length, expected);
    assert.deepEqual(audited.map((e) => e.id).sort(), delivered.map((e) => e.id).sort(), 'the audit trail and the deliveries hold the same events');
    for (const s of sessions) assert.deepEqual(about(audited, s).map((e) => e.type), SETTLEMENT_FLOW_TYPES);
    for (const a of approvals) assert.deepEqual(about(audited, a).map((e) => e.type), APPROVAL_FLOW_TYPES);
    for (const partition of ['audit.settlement', 'audit.approvals']) {
      const v = await clients.verify(partition);
      assert.equal(v.valid, true, `${partition}: ${v.reason}`);
      assert.equal(v.count, BigInt(expected / 2));
    }
    const relayLogs = [...servers.settlement!.logs, ...servers.approvals!.logs].join('');
    assert.match(relayLogs, /outbox relay cannot send events to log/, 'the relay said why events waited');
    assert.match(relayLogs, /outbox relay reaches log again/);
  });
});
