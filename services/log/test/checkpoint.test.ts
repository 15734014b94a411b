import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import {
  MAX_NOTE_BYTES,
  checkpointBody,
  ed25519PublicKeyRaw,
  noteKeyId,
  openCheckpoint,
  openNote,
  parseCheckpointBody,
  parseVerifierKey,
  signNote,
  verifierKeyString,
} from '../src/domain/checkpoint.js';

// The signed-note reference vectors of golang.org/x/mod/sumdb/note (note_test.go: TestNewVerifier,
// TestSign, TestOpen). Ed25519 is deterministic (RFC 8032), so producing the published note byte
// for byte proves Go verifiers accept Gantry's notes, and opening it proves the reverse.
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const PETER_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
const ENOCH_SIG = '\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';

/** An Ed25519 KeyObject from a 32-byte seed: PKCS#8 is a fixed 16-byte DER prefix plus the seed (RFC 8410). */
function ed25519FromSeed(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
}

/** The Go signer key string: PRIVATE+KEY+<name>+<id>+base64(0x01 || seed). */
function peterPrivateKey(): KeyObject {
  const blob = Buffer.from(PETER_SKEY.split('+').slice(4).join('+'), 'base64');
  assert.equal(blob[0], 0x01);
  return ed25519FromSeed(blob.subarray(1));
}

const ROOT = Buffer.from('5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328', 'hex');

function newKey(): KeyObject {
  return generateKeyPairSync('ed25519').privateKey;
}

describe('signed-note interoperability with golang.org/x/mod/sumdb/note', () => {
  test('the PeterNeumann key has the published key id and verifier key string', () => {
    const raw = ed25519PublicKeyRaw(peterPrivateKey());
    assert.equal(noteKeyId('PeterNeumann', raw).toString('hex'), 'c74f20a3');
    assert.equal(verifierKeyString('PeterNeumann', raw), PETER_VKEY);
    assert.deepEqual(parseVerifierKey(PETER_VKEY).publicKeyRaw, raw);
  });

  test('signing the published text reproduces the published note byte for byte', () => {
    assert.equal(signNote(GO_TEXT, 'PeterNeumann', peterPrivateKey()), `${GO_TEXT}\n${PETER_SIG}`);
  });

  test('the published two-signature note opens with either key alone; the other signature is ignored', () => {
    const note = `${GO_TEXT}\n${PETER_SIG}${ENOCH_SIG}`;
    assert.equal(openNote(note, PETER_VKEY), GO_TEXT);
    assert.equal(openNote(note, ENOCH_VKEY), GO_TEXT);
    assert.equal(openNote(Buffer.from(note, 'utf8'), ENOCH_VKEY), GO_TEXT);
  });

  test('the published invalid signature and malformed notes are refused', () => {
    const bad = [
      `${GO_TEXT}\n${PETER_SIG.slice(0, 60)}ABCD${PETER_SIG.slice(60)}`, // corrupted signature
      GO_TEXT,
      `${GO_TEXT}\n`,
      `${GO_TEXT}\n${PETER_SIG.slice(0, -1)}`,
      `\x01${GO_TEXT}\n${PETER_SIG}`,
      `${GO_TEXT}\n\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
      `${GO_TEXT}\n${PETER_SIG}Unexpected line.\n`,
      `${GO_TEXT}\n${ENOCH_SIG}`, // only an unknown key's signature
      GO_TEXT.replace('cryptography', 'cryptographY') + `\n${PETER_SIG}`,
    ];
    for (const note of bad) assert.throws(() => openNote(note, PETER_VKEY), Error, JSON.stringify(note.slice(0, 40)));
  });

  test('every truncation and every single-byte change of a verifier key is refused', () => {
    const b = Buffer.from(PETER_VKEY);
    for (let i = 0; i <= b.length; i++) {
      for (let j = i + 1; j <= b.length; j++) {
        if (i !== 0 || j !== b.length) assert.throws(() => parseVerifierKey(b.subarray(i, j).toString()), Error, b.subarray(i, j).toString());
      }
    }
    for (let i = 0; i < b.length; i++) {
      const changed = Buffer.from(b);
      changed[i]! += 1;
      assert.throws(() => parseVerifierKey(changed.toString()), Error, changed.toString());
    }
  });
});

describe('checkpoints', () => {
  const key = newKey();
  const name = 'log.gantry.example';
  const vkey = verifierKeyString(name, ed25519PublicKeyRaw(key));
  const origin = `${name}/orders`;
  const note = signNote(checkpointBody(origin, 8n, ROOT), name, key);

  test('the body is origin, decimal size and base64 root, one per line', () => {
    // Expected base64 computed independently (Python base64.b64encode).
    assert.equal(checkpointBody(origin, 8n, ROOT), `${origin}\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n`);
    assert.equal(checkpointBody(origin, 0, ROOT).split('\n')[1], '0');
    assert.throws(() => checkpointBody(origin, 8n, ROOT.subarray(1)), /32 bytes/);
    assert.throws(() => checkpointBody('a\nb', 8n, ROOT), /origin/);
    assert.throws(() => checkpointBody(origin, -1n, ROOT), RangeError);
  });

  test('a signed checkpoint opens with its verifier key and yields origin, size and root', () => {
    assert.match(vkey, /^log\.gantry\.example\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$/);
    assert.match(note, /\n\n\u2014 log\.gantry\.example [A-Za-z0-9+/]{91}=\n$/);
    assert.deepEqual(openCheckpoint(note, vkey), { origin, size: 8n, rootHash: ROOT });
    assert.deepEqual(openCheckpoint(note, parseVerifierKey(vkey)), { origin, size: 8n, rootHash: ROOT });
  });

  test('a checkpoint also signed by other keys (witnesses) still opens with the log key', () => {
    const witness = newKey();
    const cosigned = note + signNote(checkpointBody(origin, 8n, ROOT), 'witness.example', witness).split('\n\n')[1]!;
    assert.deepEqual(openCheckpoint(cosigned, vkey).size, 8n);
  });

  test('a tampered body is refused: changed size, changed root, changed origin', () => {
    const tampered = [
      note.replace('\n8\n', '\n9\n'),
      note.replace(origin, `${name}/payments`),
      note.replace(ROOT.toString('base64'), Buffer.alloc(32, 1).toString('base64')),
    ];
    for (const t of tampered) assert.throws(() => openCheckpoint(t, vkey), /does not verify/);
  });

  test('a note signed by another key under the same name is refused (its key id differs)', () => {
    const other = signNote(checkpointBody(origin, 8n, ROOT), name, newKey());
    assert.throws(() => openCheckpoint(other, vkey), /no signature by the pinned key/);
  });

  test('a note signed under another name is refused even with the same key', () => {
    const renamed = signNote(checkpointBody(origin, 8n, ROOT), 'other.example', key);
    assert.throws(() => openCheckpoint(renamed, vkey), /no signature by the pinned key/);
  });

  test('a bad signature by the pinned key rejects the note even when another copy verifies', () => {
    const sigLine = note.split('\n\n')[1]!;
    const corrupted = sigLine.slice(0, 40) + (sigLine[40] === 'A' ? 'B' : 'A') + sigLine.slice(41);
    assert.throws(() => openCheckpoint(note + corrupted, vkey), /does not verify/);
  });

  test('a truncated note is refused wherever it is cut', () => {
    for (let cut = 0; cut < note.length; cut++) assert.throws(() => openCheckpoint(note.slice(0, cut), vkey), Error, `cut at ${cut}`);
  });

  test('a malformed body is refused even when correctly signed', () => {
    const bodies = [
      `${origin}\n08\n${ROOT.toString('base64')}\n`, // leading zero
      `${origin}\n-1\n${ROOT.toString('base64')}\n`,
      `${origin}\n18446744073709551616\n${ROOT.toString('base64')}\n`, // 2^64
      `${origin}\n8\n${ROOT.subarray(1).toString('base64')}\n`, // 31-byte root
      `${origin}\n8\n${ROOT.toString('base64').replace('=', '')}\n`, // unpadded base64
      `${origin}\n8\n`,
    ];
    for (const body of bodies) assert.throws(() => openCheckpoint(signNote(body, name, key), vkey), /checkpoint/, JSON.stringify(body));
    // Extension lines are part of the spec and are signed: accepted, and ignored.
    assert.equal(openCheckpoint(signNote(`${origin}\n8\n${ROOT.toString('base64')}\next\n`, name, key), vkey).size, 8n);
  });

  test('oversized notes and notes with too many lines are refused before any signature is checked', () => {
    assert.throws(() => openCheckpoint(note + '\u2014 x AAAAAAAA\n'.repeat(2000), vkey), new RegExp(`over the ${MAX_NOTE_BYTES}-byte limit`));
    assert.throws(() => openCheckpoint(note + '\u2014 x AAAAAAAA\n'.repeat(200), vkey), /more than 128 lines/);
  });

  test('key names with spaces or "+" are refused when signing and when building key strings', () => {
    const raw = ed25519PublicKeyRaw(key);
    for (const bad of ['', 'a b', 'a+b', 'a\tb', 'a\u00a0b']) {
      assert.throws(() => verifierKeyString(bad, raw), /key name/);
      assert.throws(() => signNote(`${origin}\n1\n${ROOT.toString('base64')}\n`, bad, key), /key name/);
    }
  });

  test('parseCheckpointBody reads a body directly', () => {
    assert.deepEqual(parseCheckpointBody(checkpointBody('o', 2n ** 64n - 1n, ROOT)), { origin: 'o', size: 2n ** 64n - 1n, rootHash: ROOT });
  });
});
