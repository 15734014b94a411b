// The webhooks benchmark's second baseline: the least a durable, signed webhook sender does on
// PostgreSQL, written plainly, with none of the service around it (no gRPC, TLS, JWT, retries
// schedule, rate limits, tracing, registry). Publishing is one statement per call that stores the
// events and their deliveries (the benchmark's publishers run it); this worker claims due
// deliveries in batches with a lease (one statement), POSTs each signed as Standard Webhooks
// over keep-alive connections, and records the outcomes with an attempt row each (one statement).
// Every step is durable (fsync on), so a delivery is sent at least once whatever crashes, as the
// service's are; what it leaves out is everything a platform adds to that.
//
// Run as its own process by webhooks.bench.ts (pinned to the server's core):
//   bare-queue.ts <postgres-url>
// creates schema bare_queue, prints {"ready": true}, then delivers until SIGTERM.
import { createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Agent, request } from 'undici';

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: bare-queue.ts <postgres-url>\n');
  process.exit(2);
}

/** Deliveries per claim, as the service's default claim batch. */
const CLAIM_BATCH = 100;
/** Claims in flight at once: while one batch's POSTs are out, the next is claimed. */
const LOOPS = 2;

const BARE_QUEUE_SCHEMA = `
CREATE SCHEMA IF NOT EXISTS bare_queue;
CREATE TABLE IF NOT EXISTS bare_queue.endpoints (id int PRIMARY KEY, url text NOT NULL, secret bytea NOT NULL);
CREATE TABLE IF NOT EXISTS bare_queue.events (id text PRIMARY KEY, payload bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS bare_queue.deliveries (
  id bigserial PRIMARY KEY,
  event_id text NOT NULL,
  endpoint_id int NOT NULL,
  delivered boolean NOT NULL DEFAULT false,
  attempts int NOT NULL DEFAULT 0,
  leased_until timestamptz
);
CREATE INDEX IF NOT EXISTS deliveries_due ON bare_queue.deliveries (id) WHERE NOT delivered;
CREATE TABLE IF NOT EXISTS bare_queue.attempts (delivery_id bigint NOT NULL, status int NOT NULL, at timestamptz NOT NULL DEFAULT now());
`;

const CLAIM_SQL = `
WITH picked AS (
  SELECT id FROM bare_queue.deliveries
  WHERE NOT delivered AND (leased_until IS NULL OR leased_until < now())
  ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
), leased AS (
  UPDATE bare_queue.deliveries d SET leased_until = now() + interval '30 seconds', attempts = d.attempts + 1
  FROM picked WHERE d.id = picked.id
  RETURNING d.id, d.event_id, d.endpoint_id
)
SELECT leased.id, leased.event_id, ev.payload, ep.url, ep.secret
FROM leased JOIN bare_queue.events ev ON ev.id = leased.event_id JOIN bare_queue.endpoints ep ON ep.id = leased.endpoint_id`;

const OUTCOME_SQL = `
WITH done AS (
  UPDATE bare_queue.deliveries SET delivered = true, leased_until = NULL WHERE id = ANY($1::bigint[]) RETURNING id
)
INSERT INTO bare_queue.attempts (delivery_id, status) SELECT id, 200 FROM done`;

interface Due {
  id: string;
  event_id: string;
  payload: Buffer;
  url: string;
  secret: Buffer;
}

const pool = new pg.Pool({ connectionString: url, max: LOOPS + 1, application_name: 'bare-queue' });
await pool.query(BARE_QUEUE_SCHEMA);
const agent = new Agent({ connections: 64, pipelining: 1 });
let stopping = false;

/** One Standard Webhooks POST: webhook-signature = v1,base64(HMAC-SHA256(secret, id.timestamp.body)). */
async function post(d: Due): Promise<boolean> {
  const timestamp = Math.floor(Date.now() / 1000).toString();
  const signature = createHmac('sha256', d.secret).update(`${d.event_id}.${timestamp}.`).update(d.payload).digest('base64');
  const res = await request(d.url, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', 'webhook-id': d.event_id, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${signature}` },
    body: d.payload,
  });
  await res.body.dump();
  return res.statusCode >= 200 && res.statusCode < 300;
}

async function loop(): Promise<void> {
  while (!stopping) {
    const { rows } = await pool.query<Due>({ name: 'claim', text: CLAIM_SQL, values: [CLAIM_BATCH] });
    if (rows.length === 0) {
      await sleep(1);
      continue;
    }
    const ok = await Promise.all(rows.map((d) => post(d).catch(() => false)));
    // A failed POST keeps its lease and is claimed again once it expires: enough for a baseline
    // that only ever meets a receiver answering 200.
    const delivered = rows.filter((_, i) => ok[i]).map((d) => d.id);
    if (delivered.length > 0) await pool.query({ name: 'outcome', text: OUTCOME_SQL, values: [delivered] });
  }
}

const loops = Array.from({ length: LOOPS }, () => loop());
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
process.on('SIGTERM', () => {
  stopping = true;
  void Promise.allSettled(loops)
    .then(() => pool.end())
    .finally(() => process.exit(0));
});
