// The embedded database's volume full (issue 20): `gantry serve --target=all` on PGlite with its
// data dir on a small tmpfs, which a filler file then fills. Writes of every service are refused
// with RESOURCE_EXHAUSTED saying the disk is full (kit errors.ts: SQLSTATE 53100, whatever wraps
// it), reads keep working, the process stays alive and live, and once the filler is deleted the
// refused requests, sent again unchanged, succeed and are booked once; the log's chain verifies.
// Needs root for the mount; skips elsewhere.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, rmdirSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { unary } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import { SettlementWallet } from '@gantry/settlement/client';
import { checkHealth } from '@gantry/test-support/clients';
import { freshPgliteDir } from '@gantry/test-support/databases';
import { startGantry, type GantryServer } from '../support/gantry-process.js';
import { PlatformClients } from '../platform/support.js';

const exec = promisify(execFile);
/** Room for the PGlite cluster (about 40 MiB) and what the test writes before the filler. */
const VOLUME = '96m';
/** Writes of one kind tried, at most, before the full disk must have refused one. */
const MAX_WRITES_UNTIL_REFUSED = 3_000;
const CALL_DEADLINE_MS = 10_000;

const skip = process.platform !== 'linux' ? 'needs Linux (tmpfs)' : process.getuid?.() !== 0 ? 'needs root to mount a tmpfs (CI runs as root)' : false;

/** Writes zeros to `path` until the volume refuses more (ENOSPC), in shrinking chunks so no room is left. */
function fill(path: string): number {
  const fd = openSync(path, 'w');
  let bytes = 0;
  try {
    for (const chunk of [1 << 20, 1 << 14, 1 << 10]) {
      const zeros = Buffer.alloc(chunk);
      for (;;) {
        try {
          bytes += writeSync(fd, zeros);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return bytes;
}

/** Sends writes made by `next(i)` until one is refused; returns how many were accepted and the refusal. */
async function writeUntilRefused(next: (i: number) => Promise<unknown>): Promise<{ accepted: number; refusal: ServiceError }> {
  for (let i = 0; i < MAX_WRITES_UNTIL_REFUSED; i++) {
    try {
      await next(i);
    } catch (err) {
      return { accepted: i, refusal: err as ServiceError };
    }
  }
  throw new Error(`${MAX_WRITES_UNTIL_REFUSED} writes accepted on a full disk`);
}

function approvalRequest(requestId: string): approvalsv1.SubmitApprovalRequestRequest {
  const content = Buffer.alloc(1024, 65);
  return {
    requestId,
    type: approvalsv1.ApprovalType.APPROVAL_TYPE_PARAMETER_CHANGE,
    priority: approvalsv1.ApprovalPriority.APPROVAL_PRIORITY_HIGH,
    requester: '',
    title: 'disk full',
    content,
    contentHash: createHash('sha256').update(content).digest(),
    validators: ['val-a', 'val-b'],
    requiredApprovals: 1,
    expiry: { $case: 'ttl', value: { seconds: 3600n, nanos: 0 } },
    labels: {},
  };
}

describe('the embedded database\'s volume full', { skip }, () => {
  let mount: string;
  let server: GantryServer;
  let clients: PlatformClients;
  before(async () => {
    mount = mkdtempSync(join(tmpdir(), 'gantry-disk-full-'));
    await exec('mount', ['-t', 'tmpfs', '-o', `size=${VOLUME},mode=0700`, 'tmpfs', mount]);
    await freshPgliteDir(join(mount, 'db'));
    server = await startGantry('all', { GANTRY_DATA_DIR: mount, GANTRY_RATE_LIMIT_POINTS: '1000000' });
    const pki = (f: string) => join(mount, 'pki', f);
    const at = `127.0.0.1:${server.port}`;
    clients = new PlatformClients({ settlement: at, approvals: at, webhooks: at, log: at }, { caFile: pki('ca.crt'), certFile: pki('client.crt'), keyFile: pki('client.key'), serverName: 'localhost' }, mount);
  });
  after(async () => {
    clients?.close();
    await server?.stop();
    if (mount) {
      await exec('umount', [mount]).catch(() => {});
      rmdirSync(mount);
    }
  });

  test('writes are refused with RESOURCE_EXHAUSTED saying the disk is full, reads work, the process lives, and writes succeed once space returns', async (t) => {
    const c = clients;
    const logMd = c.as('disk-test', ['log.append', 'log.read']);
    const admin = c.as('treasury', ['settlement.admin', 'settlement.read']);
    const partition = 'disk-full';
    const payload = (i: number) => Buffer.alloc(2048, i % 251);
    const append = (i: number) => unary(c.log.append, c.log, { partition, data: payload(i), idempotencyKey: `disk-${i}` }, logMd, CALL_DEADLINE_MS);
    const wallet = SettlementWallet.generate();
    const deposit = (i: number) => unary(c.settlement.deposit, c.settlement, { walletAddress: wallet.address, amountMinor: 10n, transferId: `disk-${i}`, memo: 'x'.repeat(200) }, admin, CALL_DEADLINE_MS);
    const submitter = c.as('ops', ['approvals.submit', 'approvals.read']);
    const submit = (i: number) => unary(c.approvals.submitApprovalRequest, c.approvals, approvalRequest(`disk-${i}`), submitter, CALL_DEADLINE_MS);
    const publisher = c.as('disk-test', ['webhooks.publish']);
    const publish = (i: number) =>
      unary(c.webhooks.publishEvent, c.webhooks, { eventId: `disk-${i}`, eventType: 'disk.event', payload: Buffer.alloc(1024, 32), contentType: 'application/json', owner: '', occurredAt: undefined, traceContext: {} }, publisher, CALL_DEADLINE_MS);
    for (let i = 0; i < 5; i++) await Promise.all([append(i), deposit(i), submit(i), publish(i)]);

    const filled = fill(join(mount, 'filler'));
    const { accepted: appended, refusal: appendRefusal } = await writeUntilRefused((i) => append(5 + i));
    const { accepted: deposited, refusal: depositRefusal } = await writeUntilRefused((i) => deposit(5 + i));
    const { accepted: submitted, refusal: submitRefusal } = await writeUntilRefused((i) => submit(5 + i));
    const { accepted: published, refusal: publishRefusal } = await writeUntilRefused((i) => publish(5 + i));
    for (const [what, refusal] of [['Append', appendRefusal], ['Deposit', depositRefusal], ['SubmitApprovalRequest', submitRefusal], ['PublishEvent', publishRefusal]] as const) {
      assert.equal(refusal.code, status.RESOURCE_EXHAUSTED, `${what} on a full disk: ${status[refusal.code]} ${refusal.details}`);
      assert.match(refusal.details, /disk is full: writes are refused until space is freed/);
    }

    // Reads, health and the process are unaffected.
    const last = await unary(c.log.getLastEntry, c.log, { partition }, logMd);
    assert.equal(last.entry!.seq, BigInt(5 + appended - 1), 'the last entry is the last acknowledged append');
    const balance = await unary(c.settlement.getCreditStatus, c.settlement, { walletAddress: wallet.address }, admin);
    assert.equal(balance.l1BalanceMinor, BigInt(10 * (5 + deposited)));
    const health = async (name: string) => (await checkHealth(`127.0.0.1:${server.healthPort}`, credentials.createInsecure(), name)).status;
    assert.equal(await health('liveness'), 'SERVING');
    const readinessWhileFull = await health('readiness');
    assert.equal(server.child.exitCode, null, 'the process is alive');
    assert.match(server.logs.join(''), /the database's disk is full: writes fail with RESOURCE_EXHAUSTED/, 'the log says why writes fail');

    // Space returns: the refused requests, sent again unchanged, succeed, and the ones after them.
    rmSync(join(mount, 'filler'));
    const refusedAppend = 5 + appended;
    const r = await append(refusedAppend);
    assert.equal(r.seq, BigInt(refusedAppend), 'the refused append was not booked; sent again it takes the next seq');
    assert.equal((await append(refusedAppend)).seq, r.seq, 'and is idempotent on its key');
    await deposit(5 + deposited);
    await deposit(5 + deposited);
    const { approval } = await submit(5 + submitted);
    assert.equal((await submit(5 + submitted)).approval!.approvalId, approval!.approvalId, 'the refused submission, sent again, makes one approval');
    assert.equal((await publish(5 + published)).duplicate, false, 'the refused publish was not queued');
    assert.equal((await publish(5 + published)).duplicate, true);
    for (let i = 1; i <= 20; i++) await append(refusedAppend + i);
    const after = await unary(c.settlement.getCreditStatus, c.settlement, { walletAddress: wallet.address }, admin);
    assert.equal(after.l1BalanceMinor, BigInt(10 * (5 + deposited + 1)), 'the refused deposit is booked once after space returned');
    const v = await unary(c.log.verify, c.log, { partition }, logMd, 60_000);
    assert.equal(v.valid, true, v.reason);
    assert.equal(v.count, BigInt(refusedAppend + 21));
    assert.equal(server.child.exitCode, null);
    t.diagnostic(`filler ${Math.round(filled / 2 ** 20)} MiB; on the full disk ${appended} appends, ${deposited} deposits, ${submitted} submissions and ${published} publishes still fit in allocated pages, then RESOURCE_EXHAUSTED; readiness while full: ${readinessWhileFull}; after the filler went, every write succeeded and the chain of ${v.count} entries verifies`);
  });
});
