import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { Status, streamOf, unary } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import { printJson, withConnection, withServiceClient, type Connection, type ConnectionOptions } from '../connection.js';
import { enumName } from './enum-name.js';

const client = (c: Connection) => new approvalsv1.ApprovalsServiceClient(c.address, c.credentials, c.options);
type ApprovalsClient = ReturnType<typeof client>;
const withClient = <T>(opts: ConnectionOptions, scopes: string[], fn: (c: Connection, a: ApprovalsClient) => Promise<T>) => withServiceClient(opts, scopes, client, fn);

const out = (line: string) => process.stdout.write(line + '\n');

/** Enum names as this command prints them: lower case, without the prefix (APPROVAL_STATE_PENDING → pending). */
function lowerName<E>(toJson: (e: E) => string, prefix: string): (e: E) => string {
  const name = enumName(toJson, prefix);
  return (e) => name(e).toLowerCase();
}

/** Enum values by their short CLI name, e.g. `large-transaction` → APPROVAL_TYPE_LARGE_TRANSACTION. */
function enumOption<E extends number>(flag: string, prefix: string, toJson: (e: E) => string, values: readonly E[]) {
  const cliName = lowerName(toJson, prefix);
  const byName = new Map(values.map((v) => [cliName(v).replaceAll('_', '-'), v]));
  return (text: string): E => {
    const v = byName.get(text.toLowerCase());
    if (v === undefined) throw new Error(`${flag} must be one of ${[...byName.keys()].join(', ')}; got "${text}"`);
    return v;
  };
}

const { ApprovalType, ApprovalPriority, ApprovalState, VoteDecision } = approvalsv1;
const parseType = enumOption('--type', 'APPROVAL_TYPE_', approvalsv1.approvalTypeToJSON, [
  ApprovalType.APPROVAL_TYPE_LARGE_TRANSACTION,
  ApprovalType.APPROVAL_TYPE_CONTRACT_DEPLOYMENT,
  ApprovalType.APPROVAL_TYPE_PARAMETER_CHANGE,
  ApprovalType.APPROVAL_TYPE_ACCESS_GRANT,
  ApprovalType.APPROVAL_TYPE_OTHER,
]);
const parsePriority = enumOption('--priority', 'APPROVAL_PRIORITY_', approvalsv1.approvalPriorityToJSON, [
  ApprovalPriority.APPROVAL_PRIORITY_NORMAL,
  ApprovalPriority.APPROVAL_PRIORITY_HIGH,
  ApprovalPriority.APPROVAL_PRIORITY_CRITICAL,
]);
const parseState = enumOption('--state', 'APPROVAL_STATE_', approvalsv1.approvalStateToJSON, [
  ApprovalState.APPROVAL_STATE_PENDING,
  ApprovalState.APPROVAL_STATE_APPROVED,
  ApprovalState.APPROVAL_STATE_REJECTED,
  ApprovalState.APPROVAL_STATE_EXPIRED,
]);
const parseDecision = enumOption('<decision>', 'VOTE_DECISION_', approvalsv1.voteDecisionToJSON, [
  VoteDecision.VOTE_DECISION_APPROVE,
  VoteDecision.VOTE_DECISION_REJECT,
  VoteDecision.VOTE_DECISION_ABSTAIN,
]);

const collect = <T>(parse: (s: string) => T) => (value: string, previous: T[] = []) => [...previous, parse(value)];

const UNIT_SEC: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };
function parseTtl(text: string): { seconds: bigint; nanos: number } {
  const m = /^(\d+)(s|m|h|d)$/.exec(text);
  if (!m) throw new Error(`--ttl must be a whole number with a unit (s, m, h or d), e.g. 90m or 24h; got "${text}"`);
  return { seconds: BigInt(Number(m[1]) * UNIT_SEC[m[2]!]!), nanos: 0 };
}

function parseLabel(text: string, previous: Record<string, string> = {}): Record<string, string> {
  const i = text.indexOf('=');
  if (i <= 0) throw new Error(`--label must be key=value, got "${text}"`);
  return { ...previous, [text.slice(0, i)]: text.slice(i + 1) };
}

const stateName = lowerName(approvalsv1.approvalStateToJSON, 'APPROVAL_STATE_');
const typeName = lowerName(approvalsv1.approvalTypeToJSON, 'APPROVAL_TYPE_');
const priorityName = lowerName(approvalsv1.approvalPriorityToJSON, 'APPROVAL_PRIORITY_');
const decisionName = lowerName(approvalsv1.voteDecisionToJSON, 'VOTE_DECISION_');
const eventTypeName = lowerName(approvalsv1.approvalEventTypeToJSON, 'APPROVAL_EVENT_TYPE_');
const changeName = lowerName(approvalsv1.pendingChangeToJSON, 'PENDING_CHANGE_');

function approvalJson(a: approvalsv1.Approval) {
  return {
    approvalId: a.approvalId,
    state: stateName(a.state),
    type: typeName(a.type),
    priority: priorityName(a.priority),
    requester: a.requester,
    title: a.title,
    contentSha256: a.contentHash.toString('hex'),
    validators: a.validators,
    requiredApprovals: a.requiredApprovals,
    tally: a.tally,
    votes: a.votes.map((v) => ({ validator: v.validator, decision: decisionName(v.decision), reason: v.reason, castAt: v.castAt?.toISOString() })),
    version: a.version,
    createdAt: a.createdAt?.toISOString(),
    expiresAt: a.expiresAt?.toISOString(),
    finalizedAt: a.finalizedAt?.toISOString() ?? null,
    labels: a.labels,
  };
}

/** One line per approval: id, state, approvals so far of M (of N), type, priority, title. */
function approvalLine(a: approvalsv1.Approval): string {
  const t = a.tally;
  return `${a.approvalId}\t${stateName(a.state)}\t${t?.approvals ?? 0}/${a.requiredApprovals} of ${a.validators.length}\t${typeName(a.type)}\t${priorityName(a.priority)}\t${a.title}`;
}

const AS_HELP = 'who you act as: the subject of the dev token minted when --token is not given (a validator or requester name)';

/** `gantry approvals ...`: M-of-N approval requests over the network. */
export function approvalsCommand(): Command {
  const cmd = new Command('approvals').description('submit M-of-N approval requests, vote on them, and follow them on the approvals service').addHelpText(
    'after',
    `
A request from submission to a decision (dev tokens, acting as different people with --as):
  gantry approvals submit --as alice --validators bob,carol,dave --required 2 --title 'raise limit' 'new limit: 5000'
  gantry approvals pending --as bob                 # bob's to-do list, kept up to date
  gantry approvals vote --as bob <id> approve
  gantry approvals watch --id <id>                  # every change, resumable with --from <version>`,
  );
  submitCommand(cmd);
  voteCommand(cmd);
  statusCommand(cmd);
  listCommand(cmd);
  watchCommand(cmd);
  pendingCommand(cmd);
  return cmd;
}

interface SubmitOptions extends ConnectionOptions {
  validators: string[];
  required: number;
  title: string;
  type: approvalsv1.ApprovalType;
  priority: approvalsv1.ApprovalPriority;
  ttl: { seconds: bigint; nanos: number };
  expiresAt?: Date;
  requester: string;
  label: Record<string, string>;
  requestId: string;
}

/** `gantry approvals submit`: a new request, its content from the argument or stdin. */
function submitCommand(parent: Command): Command {
  return withConnection(parent.command('submit [content]').description('create a PENDING request (content from the argument, or stdin when omitted); needs scope approvals.submit'))
    .requiredOption('--validators <list>', 'comma-separated validator identities (JWT subjects), 1 to 100, distinct', (v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .requiredOption('--required <m>', 'approvals needed (M of the N validators)', (v) => {
      if (!/^\d+$/.test(v)) throw new Error(`--required must be a whole number, got "${v}"`);
      return Number(v);
    })
    .option('--title <text>', 'short summary, up to 256 characters', '')
    .addOption(new Option('--type <type>', 'large-transaction, contract-deployment, parameter-change, access-grant or other').argParser(parseType).default(ApprovalType.APPROVAL_TYPE_OTHER, 'other'))
    .addOption(new Option('--priority <priority>', 'normal, high or critical').argParser(parsePriority).default(ApprovalPriority.APPROVAL_PRIORITY_NORMAL, 'normal'))
    .addOption(new Option('--ttl <duration>', 'expire after this long, e.g. 90m or 24h').argParser(parseTtl).default(parseTtl('24h'), '24h').conflicts('expiresAt'))
    .option('--expires-at <time>', 'expire at this ISO 8601 time instead of a --ttl', (v) => {
      const d = new Date(v);
      if (Number.isNaN(d.getTime())) throw new Error(`--expires-at must be an ISO 8601 time, e.g. 2026-12-01T12:00:00Z; got "${v}"`);
      return d;
    })
    .option('--requester <subject>', 'submit on behalf of someone else (needs scope approvals.admin)', '')
    .option('--label <key=value>', 'a label (repeatable)', parseLabel, {})
    .option('--request-id <key>', 'idempotency key: a retry with the same key and body returns the original request', '')
    .option('--as <subject>', AS_HELP)
    .action(async (content: string | undefined, opts: SubmitOptions) =>
      withClient(opts, ['approvals.submit', ...(opts.requester ? ['approvals.admin'] : [])], async (c, a) => {
        const body = content !== undefined ? Buffer.from(content, 'utf8') : readFileSync(0);
        const req: approvalsv1.SubmitApprovalRequestRequest = {
          requestId: opts.requestId,
          type: opts.type,
          priority: opts.priority,
          requester: opts.requester,
          title: opts.title,
          content: body,
          contentHash: createHash('sha256').update(body).digest(),
          validators: opts.validators,
          requiredApprovals: opts.required,
          expiry: opts.expiresAt ? { $case: 'expiresAt', value: opts.expiresAt } : { $case: 'ttl', value: opts.ttl },
          labels: opts.label,
        };
        const { approval } = await unary(a.submitApprovalRequest, a, req, c.metadata());
        if (c.json) return printJson(approvalJson(approval!));
        out(`submitted ${approval!.approvalId}: ${opts.required} of ${opts.validators.length} approvals needed, expires ${approval!.expiresAt?.toISOString()}`);
        out(`next: 'gantry approvals vote --as <validator> ${approval!.approvalId} approve|reject|abstain'`);
      }),
    );
}

/** `gantry approvals vote`: one validator's decision on a request. */
function voteCommand(parent: Command): Command {
  return withConnection(parent.command('vote <id> <decision>').description('cast your vote: approve, reject or abstain; needs scope approvals.vote'))
    .option('--reason <text>', 'why, up to 1,024 characters', '')
    .option('--as <subject>', AS_HELP)
    .action(async (id: string, decisionText: string, opts: ConnectionOptions & { reason: string }) => {
      const decision = parseDecision(decisionText);
      await withClient(opts, ['approvals.vote'], async (c, a) => {
        const r = await unary(a.submitValidatorResponse, a, { approvalId: id, decision, reason: opts.reason }, c.metadata());
        if (c.json) return printJson({ duplicate: r.duplicate, approval: approvalJson(r.approval!) });
        out(`${r.duplicate ? 'already recorded' : 'recorded'}: ${approvalLine(r.approval!)}`);
      });
    });
}

/** `gantry approvals status`: one request with its votes. */
function statusCommand(parent: Command): Command {
  return withConnection(parent.command('status <id>').description('a request with its votes and tally; needs scope approvals.read'))
    .option('--as <subject>', AS_HELP)
    .action(async (id: string, opts: ConnectionOptions) =>
      withClient(opts, ['approvals.read'], async (c, a) => {
        const { approval } = await unary(a.getApprovalStatus, a, { approvalId: id }, c.metadata());
        if (c.json) return printJson(approvalJson(approval!));
        out(approvalLine(approval!));
        for (const v of approval!.votes) out(`  ${v.validator}\t${decisionName(v.decision)}\t${v.castAt?.toISOString()}\t${v.reason}`);
      }),
    );
}

/** `gantry approvals list`: requests, a page at a time or all of them. */
function listCommand(parent: Command): Command {
  return withConnection(parent.command('list').description('requests, newest first; needs scope approvals.read'))
    .option('--state <state>', 'pending, approved, rejected or expired (repeatable)', collect(parseState), [])
    .option('--type <type>', 'a request type (repeatable)', collect(parseType), [])
    .option('--requester <subject>', 'only requests by this requester', '')
    .option('--validator <subject>', 'only requests with this validator in the set', '')
    .option('--page-size <n>', 'requests per page, up to 500', '50')
    .option('--all', 'follow next_page_token to the last page', false)
    .option('--as <subject>', AS_HELP)
    .action(async (opts: ConnectionOptions & { state: approvalsv1.ApprovalState[]; type: approvalsv1.ApprovalType[]; requester: string; validator: string; pageSize: string; all: boolean }) =>
      withClient(opts, ['approvals.read'], async (c, a) => {
        let pageToken = '';
        do {
          const r = await unary(
            a.listApprovals,
            a,
            { states: opts.state, types: opts.type, requester: opts.requester, validator: opts.validator, createdAfter: undefined, createdBefore: undefined, pageSize: Number(opts.pageSize), pageToken },
            c.metadata(),
          );
          for (const approval of r.approvals) {
            if (c.json) printJson(approvalJson(approval));
            else out(approvalLine(approval));
          }
          pageToken = r.nextPageToken;
          if (pageToken && !opts.all && !c.json) out(`more: --all, or ask for the next page`);
        } while (pageToken && opts.all);
      }),
    );
}

/** `gantry approvals watch`: every change as it happens, resumed after the server cuts a slow watch. */
function watchCommand(parent: Command): Command {
  return withConnection(parent.command('watch').description('print every change as it happens; resumes by itself when the server ends a slow stream; needs scope approvals.read'))
    .option('--id <id>', 'watch one request (default: every request)', '')
    .option('--from <version>', 'changes after this version (default: from now)', (v) => {
      if (!/^\d+$/.test(v)) throw new Error(`--from must be a version number, got "${v}"`);
      return BigInt(v);
    })
    .option('--as <subject>', AS_HELP)
    .action(async (opts: ConnectionOptions & { id: string; from?: bigint }) =>
      withClient(opts, ['approvals.read'], async (c, a) => {
        let from = opts.from ?? 0n;
        for (;;) {
          try {
            for await (const ev of streamOf(a.watchApprovalUpdates({ approvalId: opts.id, fromVersion: from }, c.metadata()))) {
              from = ev.version;
              const type = eventTypeName(ev.type);
              if (c.json) printJson({ type, version: ev.version, approval: ev.approval ? approvalJson(ev.approval) : null });
              else if (ev.approval) out(`${ev.version}\t${type}\t${approvalLine(ev.approval)}`);
            }
            return;
          } catch (err) {
            // A slow consumer is cut off with RESOURCE_EXHAUSTED: pick up from the last version seen.
            if ((err as { code?: number }).code !== Status.RESOURCE_EXHAUSTED) throw err;
            process.stderr.write(`the server ended the watch (this client fell behind); resuming from version ${from}\n`);
          }
        }
      }),
    );
}

/** `gantry approvals pending`: the caller's to-do list as a validator, kept up to date. */
function pendingCommand(parent: Command): Command {
  return withConnection(parent.command('pending').description('your to-do list as a validator, kept up to date (ADDED / REMOVED); needs scope approvals.vote'))
    .option('--type <type>', 'only this type (repeatable)', collect(parseType), [])
    .option('--min-priority <priority>', 'only this priority or higher', parsePriority)
    .option('--as <subject>', AS_HELP)
    .action(async (opts: ConnectionOptions & { type: approvalsv1.ApprovalType[]; minPriority?: approvalsv1.ApprovalPriority }) =>
      withClient(opts, ['approvals.vote'], async (c, a) => {
        const filter = { types: opts.type, minPriority: opts.minPriority ?? ApprovalPriority.APPROVAL_PRIORITY_UNSPECIFIED };
        for await (const msg of streamOf(a.streamPendingApprovals({ filter }, c.metadata()))) {
          const change = changeName(msg.change);
          if (c.json) printJson({ change, approval: msg.approval ? approvalJson(msg.approval) : null });
          else if (msg.approval) out(`${change}\t${approvalLine(msg.approval)}`);
        }
      }),
    );
}
