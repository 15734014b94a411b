// Two `gantry serve --target=webhooks` processes on one PostgreSQL database (sharing the dev PKI,
// JWT key and webhook secret key ring) delivering from one outbox to a local HTTP receiver: every
// event is delivered once, and a replica killed with SIGKILL in the middle of an attempt leaves a
// lease the other replica takes over once it expires.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { bearerMetadata, clientCredentials, clientOptions, unary } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import { eventually, tokenFor } from '@gantry/test-support/clients';
import { freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { startGantry, type GantryServer } from '../support/gantry-process.js';

requirePostgresInCi('the webhooks replica tests');

const ENDPOINTS = 4;
const EVENTS_PER_ENDPOINT = 40;
const ATTEMPT_TIMEOUT_MS = 5000;
const LEASE_MARGIN_MS = 1000;
const WAIT_MS = 60_000;
const { DELIVERY_STATUS_SUCCEEDED: D_OK } = webhooksv1.DeliveryStatus;

/** The pid of the local process whose TCP socket has local port `port` connected to `peerPort` (Linux /proc), if any. */
function pidOfConnection(pids: number[], port: number, peerPort: number): number | undefined {
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');
  const line = readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[1]?.endsWith(`:${hex(port)}`) && f[2]?.endsWith(`:${hex(peerPort)}`));
  const inode = line?.[9];
  if (!inode) return undefined;
  return pids.find((pid) => {
    try {
      return readdirSync(`/proc/${pid}/fd`).some((fd) => readlinkSync(join(`/proc/${pid}/fd`, fd)) === `socket:[${inode}]`);
    } catch {
      return false;
    }
  });
}

interface Request {
  path: string;
  eventId: string;
  /** The replica that sent it (undefined when /proc could not tell). */
  pid: number | undefined;
}

describe('two webhooks replicas sharing one PostgreSQL database', { skip: postgresSkip() }, () => {
  let database: Awaited<ReturnType<typeof freshPostgresDatabase>>;
  let a: GantryServer;
  let b: GantryServer;
  let dataDir: string;
  let receiver: Server;
  let receiverPort = 0;
  const requests: Request[] = [];
  /** Paths whose first request is held open (never answered). */
  const holdFirst = new Set<string>();
  const held: ServerResponse[] = [];
  const clients: InstanceType<typeof webhooksv1.WebhooksServiceClient>[] = [];

  const pids = () => [a.child.pid!, b.child.pid!];
  const clientOf = (s: GantryServer) => {
    const pki = (f: string) => join(dataDir, 'pki', f);
    const tls = { caFile: pki('ca.crt'), certFile: pki('client.crt'), keyFile: pki('client.key'), serverName: 'localhost' };
    const c = new webhooksv1.WebhooksServiceClient(`127.0.0.1:${s.port}`, clientCredentials(tls), clientOptions(tls));
    clients.push(c);
    return c;
  };
  const md = () => bearerMetadata(tokenFor(dataDir, 'replicas', ['webhooks.manage', 'webhooks.read', 'webhooks.publish']));
  const url = (path: string) => `http://127.0.0.1:${receiverPort}${path}`;
  const create = (c: ReturnType<typeof clientOf>, path: string, type: string) =>
    unary(c.createWebhook, c, { owner: '', externalId: '', secret: '', spec: { url: url(path), eventTypes: [type], headers: {}, description: '', paused: false, rateLimitPerSecond: 0, maxConcurrency: 0, labels: {} } }, md());
  const publish = (c: ReturnType<typeof clientOf>, eventId: string, eventType: string) =>
    unary(c.publishEvent, c, { eventId, eventType, payload: Buffer.from(`{"id":"${eventId}"}`), contentType: '', owner: '', occurredAt: undefined, traceContext: {} }, md());
  const history = (c: ReturnType<typeof clientOf>, webhookId: string) =>
    unary(c.getDeliveryHistory, c, { webhookId, eventId: '', status: 0, since: undefined, pageSize: 500, pageToken: '' }, md());

  before(async () => {
    receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => {
        const path = req.url ?? '';
        const pid = existsSync('/proc/net/tcp') ? pidOfConnection(pids(), req.socket.remotePort!, receiverPort) : undefined;
        requests.push({ path, eventId: String(req.headers['webhook-id']), pid });
        if (holdFirst.delete(path)) {
          held.push(res);
          return;
        }
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    receiverPort = (receiver.address() as AddressInfo).port;
    database = await freshPostgresDatabase('t_hooks_rep');
    const env = {
      GANTRY_DATABASE_URL: database.url,
      // The local receiver, for the test's owner only.
      GANTRY_WEBHOOKS_ALLOWED_CIDRS: 'replicas=127.0.0.1/32',
      GANTRY_WEBHOOKS_POLL_INTERVAL_MS: '50',
      GANTRY_WEBHOOKS_ATTEMPT_TIMEOUT_MS: String(ATTEMPT_TIMEOUT_MS),
      GANTRY_WEBHOOKS_LEASE_MARGIN_MS: String(LEASE_MARGIN_MS),
      GANTRY_RATE_LIMIT_POINTS: '100000',
    };
    a = await startGantry('webhooks', env);
    dataDir = a.dataDir;
    // The same data dir: the same dev CA, JWT key and key ring for webhook secrets.
    b = await startGantry('webhooks', { ...env, GANTRY_DATA_DIR: dataDir });
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const res of held) res.destroy();
    // b first: a's stop() removes the shared data dir.
    await b?.stop();
    await a?.stop();
    await database?.drop();
    receiver?.closeAllConnections();
    await new Promise((r) => receiver?.close(r));
  });

  test('events published through both replicas are each delivered exactly once: no attempt is sent twice', async () => {
    const [ca, cb] = [clientOf(a), clientOf(b)];
    const endpoints: { path: string; type: string; id: string }[] = [];
    for (let i = 0; i < ENDPOINTS; i++) {
      const path = `/many-${i}`;
      const type = `order.many${i}`;
      endpoints.push({ path, type, id: (await create(i % 2 === 0 ? ca : cb, path, type)).webhook!.webhookId });
    }
    const published: string[] = [];
    for (let n = 0; n < EVENTS_PER_ENDPOINT; n++) {
      for (const [i, e] of endpoints.entries()) {
        const eventId = `evt-many-${i}-${n}`;
        await publish((n + i) % 2 === 0 ? ca : cb, eventId, e.type);
        published.push(`${e.path} ${eventId}`);
      }
    }
    const total = ENDPOINTS * EVENTS_PER_ENDPOINT;
    const many = () => requests.filter((r) => r.path.startsWith('/many-'));
    assert.ok(await eventually(() => many().length >= total, WAIT_MS), `receiver got ${many().length} of ${total} requests`);
    for (const e of endpoints) {
      assert.ok(await eventually(async () => (await history(ca, e.id)).deliveries.every((d) => d.status === D_OK), WAIT_MS), `deliveries of ${e.path} did not all succeed`);
    }
    // Every delivery is done; no late duplicate may arrive now.
    const seen = new Map<string, number>();
    for (const r of many()) seen.set(`${r.path} ${r.eventId}`, (seen.get(`${r.path} ${r.eventId}`) ?? 0) + 1);
    const twice = [...seen].filter(([, n]) => n > 1);
    assert.deepEqual(twice, [], 'attempts delivered twice');
    assert.deepEqual([...seen.keys()].sort(), [...published].sort(), 'every event delivered');
    for (const e of endpoints) {
      const { deliveries } = await history(cb, e.id);
      assert.equal(deliveries.length, EVENTS_PER_ENDPOINT);
      assert.ok(deliveries.every((d) => d.attempts.length === 1 && d.attempts[0]!.responseStatus === 200), 'one successful attempt each');
    }
  });

  test('kill -9 of the replica making an attempt: once the lease expires the other replica records the attempt as lost and delivers it', { skip: existsSync('/proc/net/tcp') ? false : 'needs /proc/net/tcp to tell which replica sent a request' }, async () => {
    const ca = clientOf(a);
    const path = '/held';
    holdFirst.add(path);
    const { webhook } = await create(ca, path, 'order.held');
    const { deliveryIds: [deliveryId] } = await publish(ca, 'evt-held', 'order.held');
    assert.ok(await eventually(() => held.length === 1, WAIT_MS), 'the receiver did not get the first attempt');
    const first = requests.find((r) => r.path === path)!;
    assert.ok(first.pid, 'could not tell which replica sent the first attempt');
    const [victim, survivor] = first.pid === a.child.pid ? [a, b] : [b, a];
    const exited = new Promise((r) => victim.child.once('exit', r));
    victim.child.kill('SIGKILL');
    await exited;
    const c = clientOf(survivor);
    assert.ok(await eventually(async () => (await history(c, webhook!.webhookId)).deliveries[0]?.status === D_OK, WAIT_MS), 'the survivor did not complete the delivery');
    const [d] = (await history(c, webhook!.webhookId)).deliveries;
    assert.equal(d!.deliveryId, deliveryId);
    assert.deepEqual(d!.attempts.map((x) => [x.attemptNumber, x.responseStatus]), [[1, 0], [2, 200]]);
    assert.match(d!.attempts[0]!.error, /lease expired/);
    const sent = requests.filter((r) => r.path === path);
    assert.deepEqual(sent.map((r) => [r.eventId, r.pid]), [['evt-held', victim.child.pid], ['evt-held', survivor.child.pid]]);
  });
});
