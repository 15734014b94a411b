import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  DEFAULT_EXPIRES_IN_MS,
  NONCE_PATTERN,
  SettlementOperator,
  SettlementWallet,
  attestationMessage,
  canonicalMessage,
  loadWalletKey,
  randomNonce,
  saveWalletKey,
  verifySignature,
  walletAddress,
  walletFromPrivateKey,
  type SignedFields,
} from '../src/client/index.js';
import { checkAttestation, checkSignature } from '../src/api/validation.js';

// RFC 8032 section 7.1, TEST 1: a published Ed25519 seed and its public key, so the key derivation
// is checked against numbers no one here computed.
const RFC_SEED = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
const RFC_PUBLIC_KEY = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
// "0x" + the first 20 bytes of SHA-256(RFC_PUBLIC_KEY), computed once with sha256sum.
const RFC_ADDRESS = '0x21fe31dfa154a261626bf854046fd2271b7bed4b';

const NOW_MS = 1_750_000_000_000;
const SESSION = '5f0c6a52-3c1e-4d43-9a3e-2b7f9d1c0a11';

/** A wallet on a fixed clock with counting nonces, so every request is reproducible. */
function fixedWallet() {
  let n = 0;
  return SettlementWallet.fromPrivateKey(RFC_SEED, { now: () => NOW_MS, nonce: () => `nonce-${String(++n).padStart(4, '0')}` });
}

/** What the server verifies: the Signature message against the canonical message of `fields`. */
function serverAccepts(fields: SignedFields, sig: { publicKey: Buffer; signature: Buffer; timestampMs: bigint; nonce: string }): boolean {
  return walletAddress(sig.publicKey) === fields.walletAddress && verifySignature(sig.publicKey, canonicalMessage(fields, sig.timestampMs, sig.nonce), sig.signature);
}

describe('settlement client: signed requests', () => {
  const wallet = fixedWallet();

  test('an approve request verifies with the server code over the canonical message, with the default 24 h lifetime signed and sent', () => {
    const req = wallet.approve(5000n);
    const sig = req.signature!;
    assert.deepEqual(req.expiresIn, { seconds: 86_400n, nanos: 0 });
    assert.equal(sig.timestampMs, BigInt(NOW_MS));
    assert.equal(sig.nonce, 'nonce-0001');
    assert.ok(serverAccepts({ operation: 'ApproveCreditLine', walletAddress: wallet.address, creditLimitMinor: 5000n, expiresInMs: DEFAULT_EXPIRES_IN_MS }, sig));
  });

  test('a draw and a settle verify with the server code', () => {
    const draw = wallet.draw(SESSION, 250n, 'low_balance');
    assert.ok(serverAccepts({ operation: 'CreditDraw', walletAddress: wallet.address, sessionId: SESSION, amountMinor: 250n, reason: 'low_balance' }, draw.signature!));
    const settle = wallet.settle(SESSION, 300n, 20n);
    assert.ok(serverAccepts({ operation: 'CreditSettle', walletAddress: wallet.address, sessionId: SESSION, finalL2BalanceMinor: 300n, lockedInBetsMinor: 20n }, settle.signature!));
  });

  test("the server's own request check accepts the request objects as built (expires_in in milliseconds included)", () => {
    const approve = wallet.approve(1000n, 90_500n);
    assert.deepEqual(approve.expiresIn, { seconds: 90n, nanos: 500_000_000 });
    assert.deepEqual(checkSignature(approve.signature, { operation: 'ApproveCreditLine', walletAddress: wallet.address, creditLimitMinor: 1000n, expiresInMs: 90_500n }, NOW_MS), { nonce: approve.signature!.nonce });
  });

  test('a changed field, timestamp or nonce breaks the signature', () => {
    const req = wallet.draw(SESSION, 250n, 'low_balance');
    const sig = req.signature!;
    const fields: SignedFields = { operation: 'CreditDraw', walletAddress: wallet.address, sessionId: SESSION, amountMinor: 250n, reason: 'low_balance' };
    assert.ok(serverAccepts(fields, sig));
    assert.equal(serverAccepts({ ...fields, amountMinor: 251n }, sig), false, 'amount');
    assert.equal(serverAccepts({ ...fields, reason: 'low_balance ' }, sig), false, 'reason');
    assert.equal(serverAccepts({ ...fields, sessionId: SESSION.replace('a11', 'a12') }, sig), false, 'session');
    assert.equal(serverAccepts(fields, { ...sig, timestampMs: sig.timestampMs + 1n }), false, 'timestamp');
    assert.equal(serverAccepts(fields, { ...sig, nonce: 'nonce-9999' }), false, 'nonce');
    // The same numbers signed for another operation do not carry over.
    const settleFields: SignedFields = { operation: 'CreditSettle', walletAddress: wallet.address, sessionId: SESSION, finalL2BalanceMinor: 250n, lockedInBetsMinor: 0n };
    assert.equal(serverAccepts(settleFields, sig), false, 'operation');
  });

  test("another wallet's key does not verify for this wallet's address", () => {
    const other = SettlementWallet.generate({ now: () => NOW_MS });
    const req = other.draw(SESSION, 1n);
    assert.equal(serverAccepts({ operation: 'CreditDraw', walletAddress: wallet.address, sessionId: SESSION, amountMinor: 1n, reason: '' }, req.signature!), false);
  });

  test('default nonces are fresh, random and in the server pattern', () => {
    const live = SettlementWallet.generate();
    const nonces = new Set(Array.from({ length: 1000 }, () => live.draw(SESSION, 1n).signature!.nonce));
    assert.equal(nonces.size, 1000);
    for (const n of nonces) assert.match(n, NONCE_PATTERN);
    assert.ok(randomNonce().length >= 16);
  });

  test('the default clock is the current time', () => {
    const before = Date.now();
    const ts = Number(SettlementWallet.generate().approve(1n).signature!.timestampMs);
    assert.ok(ts >= before && ts <= Date.now());
  });
});

describe('settlement client: the operator attestation', () => {
  const operator = SettlementOperator.fromPrivateKey(RFC_SEED);
  const settle = { walletAddress: RFC_ADDRESS, sessionId: SESSION, finalL2BalanceMinor: 620n, lockedInBetsMinor: 30n };
  const state = { drawnMinor: 500n, drawCount: 2 };

  test('the attestation message is the documented JSON array', () => {
    assert.equal(
      attestationMessage({ ...settle, ...state }).toString(),
      `["gantry.settlement.v1","CreditSettleAttestation","${RFC_ADDRESS}","${SESSION}","500","2","620","30"]`,
    );
  });

  // An outside signer: OpenSSL's command line, not our code, signed the documented message with the
  // RFC 8032 seed (Ed25519 is deterministic, so the bytes are fixed):
  //   printf '302e020100300506032b657004220420%s' <seed hex> | xxd -r -p > seed.der
  //   openssl pkey -inform DER -in seed.der -out seed.pem
  //   printf '%s' '<the message above>' > msg.bin
  //   openssl pkeyutl -sign -rawin -inkey seed.pem -in msg.bin | xxd -p -c 128
  // An L2 server in any language that builds the same bytes produces this signature, and ours must too.
  const OPENSSL_SIGNATURE = 'b9ced68dc824330c4021cfafe9a946d39bc3d15e51ee196f549be1def5b6eda3fef9099202cb39d77d8323cbfdadce17ae89a2a36e7b699b29c8d4ba3292f80e';

  test("an outside Ed25519 signer's attestation (OpenSSL) is byte-identical to ours and passes the server's check", () => {
    const ours = operator.attest(settle, state);
    assert.equal(ours.publicKey.toString('hex'), RFC_PUBLIC_KEY);
    assert.equal(ours.signature.toString('hex'), OPENSSL_SIGNATURE);
    const outside = { publicKey: Buffer.from(RFC_PUBLIC_KEY, 'hex'), signature: Buffer.from(OPENSSL_SIGNATURE, 'hex'), ...state };
    assert.deepEqual(checkAttestation(outside, settle), { ...settle, ...state, publicKey: outside.publicKey, signature: outside.signature });
  });

  test('cosign adds the attestation to the wallet request without touching what the wallet signed', () => {
    const wallet = fixedWallet();
    const req = wallet.settle(SESSION, 620n, 30n);
    const cosigned = operator.cosign(req, state);
    assert.deepEqual({ ...cosigned, attestation: undefined }, { ...req, attestation: undefined });
    assert.deepEqual(cosigned.attestation, { publicKey: operator.publicKey, signature: Buffer.from(OPENSSL_SIGNATURE, 'hex'), ...state });
  });

  test('the server check refuses an attestation of any other wallet, session, state or amounts, and a missing or malformed one', () => {
    const att = operator.attest(settle, state);
    const refusedWith = (a: typeof att | undefined, over: Partial<typeof settle>) => {
      try {
        checkAttestation(a, { ...settle, ...over });
      } catch (err) {
        return (err as Error).message;
      }
      return 'accepted';
    };
    const doesNotVerify = /^attestation\.signature does not verify/;
    assert.match(refusedWith(att, { finalL2BalanceMinor: 621n }), doesNotVerify, 'final');
    assert.match(refusedWith(att, { lockedInBetsMinor: 31n }), doesNotVerify, 'locked');
    assert.match(refusedWith(att, { sessionId: SESSION.replace('a11', 'a12') }), doesNotVerify, 'session');
    assert.match(refusedWith(att, { walletAddress: '0x' + '0'.repeat(40) }), doesNotVerify, 'wallet');
    assert.match(refusedWith({ ...att, drawnMinor: 501n }, {}), doesNotVerify, 'drawn');
    assert.match(refusedWith({ ...att, drawCount: 3 }, {}), doesNotVerify, 'draw count');
    assert.match(refusedWith({ ...att, publicKey: SettlementOperator.generate().publicKey }, {}), doesNotVerify, 'another key');
    assert.match(refusedWith(undefined, {}), /^attestation: is required/);
    assert.match(refusedWith({ ...att, publicKey: Buffer.alloc(31) }, {}), /^attestation\.public_key: must be 32 bytes/);
    assert.match(refusedWith({ ...att, signature: Buffer.alloc(63) }, {}), /^attestation\.signature: must be 64 bytes/);
    assert.match(refusedWith({ ...att, drawnMinor: -1n }, {}), /^attestation\.drawn_minor: must be between 0/);
    // A wallet signature over the same numbers is no attestation: the operation names differ.
    const walletSig = fixedWallet().settle(SESSION, 620n, 30n).signature!;
    assert.match(refusedWith({ ...att, signature: walletSig.signature }, {}), doesNotVerify, 'wallet signature');
  });
});

describe('settlement client: wallet addresses', () => {
  test('the RFC 8032 seed gives the RFC public key and its address, also derived by an independent SHA-256', () => {
    const keys = walletFromPrivateKey(RFC_SEED);
    assert.equal(keys.publicKey.toString('hex'), RFC_PUBLIC_KEY);
    const independent = '0x' + createHash('sha256').update(Buffer.from(RFC_PUBLIC_KEY, 'hex')).digest('hex').slice(0, 40);
    assert.equal(independent, RFC_ADDRESS);
    assert.equal(keys.address, RFC_ADDRESS);
    assert.equal(fixedWallet().address, RFC_ADDRESS);
  });

  test('a private key of the wrong length is refused with its length', () => {
    assert.throws(() => walletFromPrivateKey(Buffer.alloc(31)), /32 bytes, got 31/);
  });
});

describe('settlement client: wallet key files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-wallet-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a saved key file loads back to the same wallet and is mode 0600', () => {
    const file = join(dir, 'roundtrip.json');
    const keys = walletFromPrivateKey(RFC_SEED);
    saveWalletKey(file, keys);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { privateKey: RFC_SEED.toString('hex'), publicKey: RFC_PUBLIC_KEY, address: RFC_ADDRESS });
    const loaded = loadWalletKey(file);
    assert.deepEqual(loaded, keys);
  });

  test('an existing key file is not overwritten without force; with force it is replaced, still 0600', () => {
    const file = join(dir, 'existing.json');
    const first = SettlementWallet.generate().keys;
    saveWalletKey(file, first);
    assert.throws(() => saveWalletKey(file, SettlementWallet.generate().keys), /already exists.*--force/);
    assert.equal(loadWalletKey(file).address, first.address, 'the first key is untouched');
    const second = SettlementWallet.generate().keys;
    chmodSync(file, 0o644);
    saveWalletKey(file, second, { force: true });
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(loadWalletKey(file).address, second.address);
  });

  test('a missing, unreadable-by-others, malformed or edited key file is refused with what to do', () => {
    assert.throws(() => loadWalletKey(join(dir, 'missing.json')), /does not exist: create one with 'gantry settlement keygen/);
    const write = (name: string, text: string, mode = 0o600) => {
      const file = join(dir, name);
      writeFileSync(file, text, { mode });
      chmodSync(file, mode);
      return file;
    };
    assert.throws(() => loadWalletKey(write('open.json', '{}', 0o644)), /can be read by other users \(mode 644\); run 'chmod 600/);
    assert.throws(() => loadWalletKey(write('garbage.json', 'not json')), /not a wallet key file \(invalid JSON/);
    assert.throws(() => loadWalletKey(write('short.json', JSON.stringify({ privateKey: 'abcd' }))), /"privateKey" must be 64 hex digits/);
    const keys = walletFromPrivateKey(RFC_SEED);
    const edited = { privateKey: RFC_SEED.toString('hex'), publicKey: RFC_PUBLIC_KEY, address: '0x' + '0'.repeat(40) };
    assert.throws(() => loadWalletKey(write('edited.json', JSON.stringify(edited))), new RegExp(`is not the private key's wallet ${keys.address}`));
  });
});
