// The whole platform as its users see it: a settlement flow and an approval flow, a local HTTP
// receiver subscribed to every domain event, and the audit partitions in the log.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { bearerMetadata, clientCredentials, clientOptions, streamOf, unary, type ClientTls } from '@gantry/kit';
import { approvalsv1, eventsv1, logv1, settlementv1, webhooksv1 } from '@gantry/proto';
import { SettlementOperator, SettlementWallet } from '@gantry/settlement/client';
import { verifyWebhook } from '@gantry/webhooks/client';
import { tokenFor } from '@gantry/test-support/clients';

/** Every domain event type (docs/events.md). */
/** Who subscribes to the domain events in these tests (its allow-list entry opens the local receiver to it alone). */
export const SUBSCRIBER = 'platform-team';

export const EVENT_TYPES = [
  'settlement.credit_line.approved',
  'settlement.credit.drawn',
  'settlement.credit_line.settled',
  'approvals.approval.created',
  'approvals.vote.cast',
  'approvals.approval.finalized',
  'approvals.approval.expired',
];

export interface Received {
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A local webhook receiver that records every request and answers 200. */
export class Receiver {
  readonly requests: Received[] = [];
  private server: Server | undefined;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.requests.push({ headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks`;
  }

  /** The events received, each checked against the endpoint's signing secret. */
  events(secret: string): { event: eventsv1.Event; headers: IncomingHttpHeaders }[] {
    return this.requests.map(({ headers, body }) => {
      const verified = verifyWebhook(headers, body, secret);
      const event = eventsv1.Event.fromJSON(JSON.parse(body.toString()));
      assert.equal(verified.id, event.id, 'webhook-id is the event id');
      return { event, headers };
    });
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }
}

/**
 * A parameter-change request for validators val-a, val-b and val-c, two of whom must approve,
 * open for an hour; `requestId` makes a resend idempotent ('' for none).
 */
export function twoOfThreeRequest(opts: { requestId: string; title: string; content?: Buffer }): approvalsv1.SubmitApprovalRequestRequest {
  const content = opts.content ?? Buffer.from(opts.requestId);
  return {
    requestId: opts.requestId,
    type: approvalsv1.ApprovalType.APPROVAL_TYPE_PARAMETER_CHANGE,
    priority: approvalsv1.ApprovalPriority.APPROVAL_PRIORITY_HIGH,
    requester: '',
    title: opts.title,
    content,
    contentHash: createHash('sha256').update(content).digest(),
    validators: ['val-a', 'val-b', 'val-c'],
    requiredApprovals: 2,
    expiry: { $case: 'ttl', value: { seconds: 3600n, nanos: 0 } },
    labels: {},
  };
}

/** Clients for each service at its address, with the dev PKI's client certificate. */
export class PlatformClients {
  readonly settlement: settlementv1.SettlementServiceClient;
  readonly approvals: approvalsv1.ApprovalsServiceClient;
  readonly webhooks: webhooksv1.WebhooksServiceClient;
  readonly log: logv1.LogServiceClient;

  constructor(
    addresses: { settlement: string; approvals: string; webhooks: string; log: string },
    tls: ClientTls,
    private readonly dataDir: string,
  ) {
    const creds = clientCredentials(tls);
    const opts = clientOptions(tls);
    this.settlement = new settlementv1.SettlementServiceClient(addresses.settlement, creds, opts);
    this.approvals = new approvalsv1.ApprovalsServiceClient(addresses.approvals, creds, opts);
    this.webhooks = new webhooksv1.WebhooksServiceClient(addresses.webhooks, creds, opts);
    this.log = new logv1.LogServiceClient(addresses.log, creds, opts);
  }

  /** Tokens by subject and scopes, reused for a minute as a real client reuses its token (they live five). */
  private readonly tokens = new Map<string, { token: string; untilMs: number }>();

  as(subject: string, scopes: string[]) {
    const key = `${subject} ${scopes.join(' ')}`;
    let held = this.tokens.get(key);
    if (!held || held.untilMs <= Date.now()) {
      held = { token: tokenFor(this.dataDir, subject, scopes), untilMs: Date.now() + 60_000 };
      this.tokens.set(key, held);
    }
    return bearerMetadata(held.token);
  }

  /** Registers an endpoint at `url` for every domain event; returns its signing secret. */
  /** Subscribes `url` to every domain event; `rateLimitPerSecond` 0 takes the service's default (100/s). */
  async subscribe(url: string, { rateLimitPerSecond = 0 } = {}): Promise<string> {
    const c = this.webhooks;
    const spec = { url, eventTypes: EVENT_TYPES, headers: {}, description: 'platform test', paused: false, rateLimitPerSecond, maxConcurrency: 0, labels: {} };
    // Domain events are the platform's: their endpoints need the families' read scopes.
    const created = await unary(c.createWebhook, c, { owner: '', externalId: '', secret: '', spec }, this.as(SUBSCRIBER, ['webhooks.manage', 'events.settlement.read', 'events.approvals.read']));
    return created.secret;
  }

  /** The L2 operator key the settlement flow attests with; registered by the flow (a retry when already). */
  private readonly operator = SettlementOperator.generate();

  /** Deposit, approve a line, draw twice, settle (attested by the L2 operator); returns the session id. */
  async settlementFlow(): Promise<string> {
    const c = this.settlement;
    const wallet = SettlementWallet.generate();
    const credit = this.as('casino-l2', ['settlement.credit']);
    const admin = this.as('treasury', ['settlement.admin']);
    await unary(c.registerOperatorKey, c, { publicKey: this.operator.publicKey, name: 'platform-test-l2' }, admin);
    await unary(c.deposit, c, { walletAddress: wallet.address, amountMinor: 10_000n, transferId: `t-${wallet.address}`, memo: '' }, admin);
    const { sessionId } = await unary(c.approveCreditLine, c, wallet.approve(1_000n), credit);
    await unary(c.creditDraw, c, wallet.draw(sessionId, 300n, 'spin'), credit);
    const last = await unary(c.creditDraw, c, wallet.draw(sessionId, 200n, 'spin'), credit);
    // The L2 side knows the session's state from the draws it made: drawn = its escrow balance.
    const settle = this.operator.cosign(wallet.settle(sessionId, 450n), { drawnMinor: last.l2BalanceMinor, drawCount: last.drawCount });
    await unary(c.creditSettle, c, settle, credit);
    return sessionId;
  }

  /** Submit a 2-of-3 request and approve it; returns its id. */
  async approvalFlow(): Promise<string> {
    const c = this.approvals;
    const id = await this.submitApproval();
    const scopes = ['approvals.vote', 'approvals.read'];
    const APPROVE = approvalsv1.VoteDecision.VOTE_DECISION_APPROVE;
    await unary(c.submitValidatorResponse, c, { approvalId: id, decision: APPROVE, reason: 'ok' }, this.as('val-a', scopes));
    await unary(c.submitValidatorResponse, c, { approvalId: id, decision: APPROVE, reason: '' }, this.as('val-b', scopes));
    return id;
  }

  /** Submit a 2-of-3 request (validators val-a, val-b, val-c) that stays PENDING for an hour; returns its id. */
  async submitApproval(): Promise<string> {
    const c = this.approvals;
    const req = twoOfThreeRequest({ requestId: '', title: 'raise the house limit', content: Buffer.from(`raise limit ${Math.random()}`) });
    const { approval } = await unary(c.submitApprovalRequest, c, req, this.as('ops', ['approvals.submit', 'approvals.read']));
    return approval!.approvalId;
  }

  /** Every entry of an audit partition, decoded (none when it does not exist yet). */
  async audit(partition: string): Promise<eventsv1.Event[]> {
    const c = this.log;
    const md = this.as('auditor', ['log.read']);
    const partitions = await unary(c.listPartitions, c, { prefix: partition, pageSize: 10, pageToken: '' }, md);
    if (!partitions.partitions.some((p) => p.name === partition)) return [];
    const events: eventsv1.Event[] = [];
    for await (const chunk of streamOf(c.read({ partition, startSeq: 0n, limit: 0n }, md))) {
      for (const entry of chunk.entries) events.push(eventsv1.Event.decode(entry.data));
    }
    return events;
  }

  /** Who the log recorded as the appender of each entry of a partition, in seq order. */
  async authors(partition: string): Promise<string[]> {
    const c = this.log;
    const authors: string[] = [];
    for await (const chunk of streamOf(c.read({ partition, startSeq: 0n, limit: 0n }, this.as('auditor', ['log.read'])))) authors.push(...chunk.entries.map((e) => e.author));
    return authors;
  }

  /** The log's own verification of a partition's hash chain and tree. */
  async verify(partition: string): Promise<logv1.VerifyResponse> {
    const c = this.log;
    return unary(c.verify, c, { partition }, this.as('auditor', ['log.read']));
  }

  close(): void {
    for (const c of [this.settlement, this.approvals, this.webhooks, this.log]) c.close();
  }
}

/** The event types each flow announces, in order. */
export const SETTLEMENT_FLOW_TYPES = ['settlement.credit_line.approved', 'settlement.credit.drawn', 'settlement.credit.drawn', 'settlement.credit_line.settled'];
export const APPROVAL_FLOW_TYPES = ['approvals.approval.created', 'approvals.vote.cast', 'approvals.vote.cast', 'approvals.approval.finalized'];

/** Events about `subject`, in the order given. */
export const about = (events: readonly eventsv1.Event[], subject: string) => events.filter((e) => e.subject === subject);

/** Asserts each id occurs once. */
export function assertUnique(ids: readonly string[], what: string): void {
  const seen = new Set<string>();
  const twice = ids.filter((id) => seen.size === seen.add(id).size);
  assert.deepEqual(twice, [], `${what}: duplicated`);
}
