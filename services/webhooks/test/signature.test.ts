// Signing and verifying, checked against the Standard Webhooks reference vector and, for every
// UTF-8 body fast-check makes up, against the `standardwebhooks` package in both directions; the
// receiver's refusals; the SSRF guard's address table; secrets sealed at rest. (The retry rules are
// in rules.test.ts, with the other delivery rules.)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Webhook } from 'standardwebhooks';
import { verifyWebhook, WebhookVerificationError } from '../src/client/index.js';
import { AddressGuard, ipLiteral } from '../src/domain/address-guard.js';
import { parseKeyring, SecretBox } from '../src/domain/secret-box.js';
import { generateSecret, secretKeyBytes, sign, signatureHeaders } from '../src/domain/signature.js';

// The Standard Webhooks reference vector (libraries/javascript/src/webhook.test.ts, "sign function works").
const REF = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  msgId: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestampSec: 1614265330,
  payload: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};
const keyOf = (s: string) => Buffer.from(s.slice('whsec_'.length), 'base64');

describe('Standard Webhooks signatures', () => {
  test('the reference vector signs to the reference signature', () => {
    assert.equal(sign(keyOf(REF.secret), REF.msgId, REF.timestampSec, Buffer.from(REF.payload)), REF.signature);
  });

  test('the receiver accepts the reference vector at its own time, and refuses it five minutes and a second later', () => {
    const headers = { 'webhook-id': REF.msgId, 'webhook-timestamp': String(REF.timestampSec), 'webhook-signature': REF.signature };
    const at = (sec: number) => ({ now: () => sec * 1000 });
    assert.equal(verifyWebhook(headers, REF.payload, REF.secret, at(REF.timestampSec)).id, REF.msgId);
    assert.throws(() => verifyWebhook(headers, REF.payload, REF.secret, at(REF.timestampSec + 301)), /too old/);
    assert.throws(() => verifyWebhook(headers, REF.payload, REF.secret, at(REF.timestampSec - 301)), /future/);
    assert.doesNotThrow(() => verifyWebhook(headers, REF.payload, REF.secret, { ...at(REF.timestampSec + 3600), toleranceSec: 3600 }));
  });

  test('for any UTF-8 body, id and time, our signature equals the standardwebhooks package\'s, and each verifies the other\'s', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/), fc.integer({ min: 1_000_000_000, max: 4_000_000_000 }), fc.uint8Array({ minLength: 24, maxLength: 64 }), (body, id, ts, key) => {
        const secret = `whsec_${Buffer.from(key).toString('base64')}`;
        const ours = sign(Buffer.from(key), id, ts, Buffer.from(body, 'utf8'));
        const theirs = new Webhook(secret).sign(id, new Date(ts * 1000), body);
        assert.equal(ours, theirs);
        const headers = { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': theirs };
        verifyWebhook(headers, Buffer.from(body, 'utf8'), secret, { now: () => ts * 1000 });
      }),
      { numRuns: 300 },
    );
  });

  test('a body that is not valid UTF-8 is signed over its bytes, and verifies with the receiver', () => {
    const body = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x41]);
    const secret = generateSecret();
    const h = signatureHeaders([secretKeyBytes(secret)!], 'evt_1', 1_700_000_000, body);
    verifyWebhook(h, body, secret, { now: () => 1_700_000_000_000 });
    assert.throws(() => verifyWebhook(h, Buffer.from(body.toString('utf8')), secret, { now: () => 1_700_000_000_000 }), WebhookVerificationError);
  });

  test('two signatures in one header (rotation): either secret verifies, a third does not; v2 and malformed entries are skipped', () => {
    const [oldS, newS, other] = [generateSecret(), generateSecret(), generateSecret()];
    const body = Buffer.from('{"a":1}');
    const h = signatureHeaders([secretKeyBytes(newS)!, secretKeyBytes(oldS)!], 'evt_2', 1_700_000_000, body);
    assert.equal(h['webhook-signature']!.split(' ').length, 2);
    const now = { now: () => 1_700_000_000_000 };
    verifyWebhook(h, body, oldS, now);
    verifyWebhook(h, body, newS, now);
    verifyWebhook(h, body, [other, oldS], now);
    assert.throws(() => verifyWebhook(h, body, other, now), /no signature matches/);
    const withNoise = { ...h, 'webhook-signature': `v2,xyz garbage v1,${'A'.repeat(44)} ${h['webhook-signature']}` };
    verifyWebhook(withNoise, body, newS, now);
  });

  test('a tampered body, id or timestamp, or a missing header, is refused', () => {
    const secret = generateSecret();
    const body = Buffer.from('{"amount":100}');
    const h = signatureHeaders([secretKeyBytes(secret)!], 'evt_3', 1_700_000_000, body);
    const now = { now: () => 1_700_000_000_000 };
    assert.throws(() => verifyWebhook(h, Buffer.from('{"amount":900}'), secret, now), WebhookVerificationError);
    assert.throws(() => verifyWebhook({ ...h, 'webhook-id': 'evt_4' }, body, secret, now), WebhookVerificationError);
    assert.throws(() => verifyWebhook({ ...h, 'webhook-timestamp': '1700000001' }, body, secret, now), WebhookVerificationError);
    assert.throws(() => verifyWebhook({ 'webhook-id': 'evt_3', 'webhook-timestamp': '1700000000' }, body, secret, now), /missing/);
  });

  test('secrets must be whsec_ + base64 of 24-64 bytes', () => {
    assert.ok(secretKeyBytes(generateSecret()));
    assert.ok(secretKeyBytes(REF.secret));
    for (const bad of ['', 'whsec_', 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', `whsec_${randomBytes(16).toString('base64')}`, `whsec_${randomBytes(65).toString('base64')}`, 'whsec_!!!!']) {
      assert.equal(secretKeyBytes(bad), undefined, bad);
    }
  });
});

describe('the SSRF guard', () => {
  const strict = new AddressGuard([]);
  const https = { scheme: 'https', port: 443 } as const;
  test('refuses loopback, private, link-local (cloud metadata), CGNAT, unique-local, unspecified, multicast and mapped loopback', () => {
    for (const ip of ['127.0.0.1', '127.8.9.10', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.100.100.200', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fd00:ec2::254', '::ffff:127.0.0.1', '::ffff:10.0.0.1']) {
      assert.ok(strict.refusal(ip, https, []), `${ip} should be refused`);
    }
  });
  test('accepts public unicast addresses', () => {
    for (const ip of ['93.184.216.34', '8.8.8.8', '2001:4860:4860::8888', '::ffff:8.8.8.8']) assert.equal(strict.refusal(ip, https, []), undefined, ip);
  });
  test('an allow-listed CIDR opens exactly its range (to the endpoints it applies to)', () => {
    const g = new AddressGuard(['127.0.0.1/32', 'fd00::/8']);
    const approved = g.allowance({ owner: 'alice', internalApproved: true });
    assert.equal(g.refusal('127.0.0.1', https, approved), undefined);
    assert.ok(g.refusal('127.0.0.2', https, approved));
    assert.equal(g.refusal('fd12::1', https, approved), undefined);
    assert.throws(() => new AddressGuard(['10.0.0.0/33']), /not <cidr> or <owner>=<cidr>/);
  });
  test('IP literals in URLs are recognised in every spelling URL normalises', () => {
    for (const u of ['http://127.0.0.1/', 'http://2130706433/', 'http://0x7f.1/', 'http://[::1]:8080/', 'http://[::127.0.0.1]/']) assert.ok(ipLiteral(new URL(u).hostname), u);
    assert.equal(ipLiteral(new URL('http://example.com/').hostname), undefined);
  });
});

describe('secrets at rest', () => {
  const k = (id: string) => `${id}=${randomBytes(32).toString('base64')}`;
  test('sealed with the first key, opened with any key of the ring, never with another webhook\'s additional data', () => {
    const k1 = k('k1');
    const k2 = k('k2');
    const old = new SecretBox(parseKeyring(k1, 'test'));
    const sealed = old.seal('whsec_abc', 'wh_1');
    assert.equal(sealed.keyId, 'k1');
    assert.ok(!sealed.ciphertext.includes(Buffer.from('whsec_abc')));
    const rotated = new SecretBox(parseKeyring(`${k2},${k1}`, 'test'));
    assert.equal(rotated.open(sealed, 'wh_1'), 'whsec_abc');
    assert.equal(rotated.seal('x', 'wh_1').keyId, 'k2');
    assert.throws(() => rotated.open(sealed, 'wh_2'));
    assert.throws(() => new SecretBox(parseKeyring(k2, 'test')).open(sealed, 'wh_1'), /not configured/);
  });
  test('a malformed key ring says what is wrong', () => {
    assert.throws(() => parseKeyring('k1=abc', 'f'), /32/);
    assert.throws(() => parseKeyring('nonsense', 'f'), /<keyId>=/);
    assert.throws(() => parseKeyring('', 'f'), /no keys/);
  });
});
