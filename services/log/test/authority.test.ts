// Who may append where (domain/authority.ts): the audit namespace belongs to the workloads owning
// each event family, authors must be recordable, and idempotency keys are the author's except in
// audit partitions. Pure rules, so every case is a plain call, and properties sweep the rest.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  MAX_AUTHOR_BYTES,
  PARTITION_WIDE_KEY_OWNER,
  appendRefusal,
  auditFamilyOf,
  authorRefusal,
  idempotencyKeyOwner,
  isAuditNamespace,
  type Caller,
} from '../src/domain/authority.js';
import { PARTITION_NAME_PATTERN } from '../src/domain/entry.js';

const token = (subject = 'alice'): Caller => ({ subject });
const workload = (name: string, families: string[]): Caller => ({ subject: `spiffe://gantry.local/${name}`, workload: { name, families: new Set(families) } });
const settlement = workload('settlement', ['settlement']);
const monolith = workload('all', ['settlement', 'approvals']);

/** Partition names the API accepts, half of them in the audit namespace in some letter case. */
const partitionName = fc.oneof(
  fc.stringMatching(PARTITION_NAME_PATTERN),
  fc.tuple(fc.constantFrom('audit.', 'AUDIT.', 'Audit.', 'aUdIt.'), fc.stringMatching(PARTITION_NAME_PATTERN)).map(([prefix, rest]) => `${prefix}${rest}`.slice(0, 128)),
);

describe('append authority', () => {
  test('a token holder (log.append) is refused every audit partition, with a message that says to append elsewhere', () => {
    for (const partition of ['audit.settlement', 'audit.approvals', 'audit.webhooks']) {
      assert.match(appendRefusal(partition, token()) ?? '', /only the \w+ service appends to it, by its workload certificate.*alice calls with a token, so append to a partition outside "audit\."/);
    }
  });

  test('a workload appends to the audit partitions of the families it owns, and only those', () => {
    assert.equal(appendRefusal('audit.settlement', settlement), undefined);
    assert.match(appendRefusal('audit.approvals', settlement) ?? '', /workload settlement owns settlement; only a workload granted family approvals/);
    assert.equal(appendRefusal('audit.settlement', monolith), undefined);
    assert.equal(appendRefusal('audit.approvals', monolith), undefined);
    assert.match(appendRefusal('audit.approvals', workload('webhooks', [])) ?? '', /owns no event family/);
  });

  test('the whole audit. namespace is reserved in any letter case: look-alikes and non-family names are nobody\'s', () => {
    for (const partition of ['AUDIT.settlement', 'Audit.settlement', 'audit.Settlement', 'audit.settlement.extra', 'audit.', 'audit._x', 'aUdIt.approvals']) {
      assert.ok(isAuditNamespace(partition), partition);
      assert.notEqual(appendRefusal(partition, monolith), undefined, `${partition} is refused even to the monolith`);
      assert.notEqual(appendRefusal(partition, token()), undefined, `${partition} is refused to a token`);
    }
    assert.equal(auditFamilyOf('audit.settlement'), 'settlement');
    assert.equal(auditFamilyOf('Audit.settlement'), undefined);
  });

  test('partitions outside the audit namespace are open to every caller', () => {
    for (const partition of ['orders', 'audit', 'auditing.x', 'my.audit.settlement', 'audit-settlement']) {
      assert.equal(appendRefusal(partition, token()), undefined, partition);
      assert.equal(appendRefusal(partition, settlement), undefined, partition);
    }
  });

  test('property: no token caller ever appends to the audit namespace, and outside it everyone may', () => {
    fc.assert(
      fc.property(partitionName, fc.string({ minLength: 1 }), (partition, subject) => {
        const refused = appendRefusal(partition, { subject }) !== undefined;
        assert.equal(refused, partition.toLowerCase().startsWith('audit.'));
      }),
    );
  });

  test('property: a workload appends to an audit partition exactly when it owns that partition\'s family', () => {
    const family = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/);
    fc.assert(
      fc.property(family, fc.uniqueArray(family, { maxLength: 4 }), (target, owned) => {
        const refused = appendRefusal(`audit.${target}`, workload('w', owned)) !== undefined;
        assert.equal(refused, !owned.includes(target));
      }),
    );
  });
});

describe('recordable authors', () => {
  test('SPIFFE IDs and token subjects are recorded as they are', () => {
    for (const subject of ['spiffe://gantry.local/settlement', 'alice', 'user:Zoë', 'x'.repeat(MAX_AUTHOR_BYTES)]) assert.equal(authorRefusal(subject), undefined, subject);
  });

  test('empty, oversized, control characters and lone surrogates are refused with the reason', () => {
    assert.match(authorRefusal('') ?? '', /empty subject/);
    assert.match(authorRefusal('x'.repeat(MAX_AUTHOR_BYTES + 1)) ?? '', /1025 bytes of UTF-8; the log records authors of at most 1024/);
    assert.match(authorRefusal('é'.repeat(513)) ?? '', /1026 bytes/, 'the limit counts UTF-8 bytes, not characters');
    for (const bad of ['a\nb', 'a\tb', 'a\u0000b', 'a\u007fb']) assert.match(authorRefusal(bad) ?? '', /control characters/, JSON.stringify(bad));
    assert.match(authorRefusal('a\ud800b') ?? '', /not valid Unicode/);
  });
});

describe('idempotency key owners', () => {
  test('an ordinary partition\'s keys are the author\'s, so two authors never share one', () => {
    assert.equal(idempotencyKeyOwner('orders', token('alice')), 'alice');
    assert.equal(idempotencyKeyOwner('orders', settlement), 'spiffe://gantry.local/settlement');
    assert.notEqual(idempotencyKeyOwner('orders', token('mallory')), idempotencyKeyOwner('orders', settlement));
  });

  test('an audit partition\'s keys are the partition\'s: the monolith\'s and the service\'s own workload find each other\'s', () => {
    assert.equal(idempotencyKeyOwner('audit.settlement', settlement), PARTITION_WIDE_KEY_OWNER);
    assert.equal(idempotencyKeyOwner('audit.settlement', monolith), PARTITION_WIDE_KEY_OWNER);
  });
});
