// Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes with Ed25519 signatures
// (https://c2sp.org/tlog-checkpoint, https://c2sp.org/signed-note). Pure: node:crypto only.
//
//   <origin>\n<tree size, decimal>\n<base64 RFC 6962 root>\n     the note text (signed bytes)
//   \n                                                            blank separator line
//   — <key name> <base64(4-byte key id || 64-byte signature)>\n  one line per signature
//
// The formats are byte-compatible with golang.org/x/mod/sumdb/note, so Go tooling (witnesses,
// monitors) can check Gantry's checkpoints; checkpoint.test.ts pins this with the Go test vector.
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { HASH_BYTES } from './entry.js';

/** Signed-note signature type byte of Ed25519 (signed-note §Signature types). */
export const SIG_TYPE_ED25519 = 0x01;

/** Largest note openCheckpoint accepts, in bytes (a checkpoint with 16 signatures is < 2 KiB). */
export const MAX_NOTE_BYTES = 16 * 1024;

/** Most lines openCheckpoint accepts in a note (text and signature lines together). */
export const MAX_NOTE_LINES = 128;

const ED25519_PUBLIC_KEY_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;
const KEY_ID_BYTES = 4;
const MAX_U64 = (1n << 64n) - 1n;
const SIGNATURE_PREFIX = '\u2014 '; // em dash, space

/** A checkpoint body: the log's identity and tree head. */
export interface Checkpoint {
  origin: string;
  size: bigint;
  rootHash: Buffer;
}

/** A parsed verifier key string. */
export interface VerifierKey {
  name: string;
  keyId: Buffer;
  publicKeyRaw: Buffer;
  publicKey: KeyObject;
}

// Key names may not contain any Unicode space (signed-note §Format), nor '+', which separates
// the fields of a key string.
const KEY_NAME_PATTERN = /^[^\s+]+$/u;

function assertKeyName(name: string): void {
  if (!KEY_NAME_PATTERN.test(name) || hasControlCharacter(name)) throw new Error(`key name ${JSON.stringify(name)} is not valid: it must be non-empty, without spaces, '+' or control characters`);
}

function hasControlCharacter(s: string): boolean {
  // Signed notes allow no ASCII control character but newline; callers check names and lines
  // separately, so newline is refused here too.
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) < 0x20) return true;
  return false;
}

/** Standard base64 (RFC 4648 §4) that must be canonical: no whitespace, padding exact. */
function decodeBase64Strict(s: string): Buffer | undefined {
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return undefined;
  const bytes = Buffer.from(s, 'base64');
  return bytes.toString('base64') === s ? bytes : undefined;
}

/** The tlog-checkpoint note text: origin, decimal size, base64 root, each ending in a newline. */
export function checkpointBody(origin: string, size: bigint | number, rootHash: Uint8Array): string {
  if (origin.length === 0 || hasControlCharacter(origin)) throw new Error(`checkpoint origin ${JSON.stringify(origin)} must be non-empty, on one line, without control characters`);
  const treeSize = BigInt(size);
  if (treeSize < 0n || treeSize > MAX_U64) throw new RangeError(`tree size must be in [0, 2^64), got ${size}`);
  if (rootHash.length !== HASH_BYTES) throw new RangeError(`root hash must be ${HASH_BYTES} bytes, got ${rootHash.length}`);
  return `${origin}\n${treeSize}\n${Buffer.from(rootHash).toString('base64')}\n`;
}

/** The signed-note key ID of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || public key)[:4]. */
export function noteKeyId(name: string, publicKeyRaw: Uint8Array): Buffer {
  if (publicKeyRaw.length !== ED25519_PUBLIC_KEY_BYTES) throw new RangeError(`Ed25519 public key must be ${ED25519_PUBLIC_KEY_BYTES} bytes, got ${publicKeyRaw.length}`);
  const digest = createHash('sha256').update(name, 'utf8').update(Buffer.from([0x0a, SIG_TYPE_ED25519])).update(publicKeyRaw).digest();
  return digest.subarray(0, KEY_ID_BYTES);
}

/** The verifier key string clients pin: "<name>+<8 hex key id>+<base64(0x01 || public key)>". */
export function verifierKeyString(name: string, publicKeyRaw: Uint8Array): string {
  assertKeyName(name);
  const keyId = noteKeyId(name, publicKeyRaw);
  return `${name}+${keyId.toString('hex')}+${Buffer.concat([Buffer.from([SIG_TYPE_ED25519]), publicKeyRaw]).toString('base64')}`;
}

/** The raw 32-byte public key of an Ed25519 KeyObject (private or public). */
export function ed25519PublicKeyRaw(key: KeyObject): Buffer {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  if (publicKey.asymmetricKeyType !== 'ed25519') throw new Error(`key must be Ed25519, got ${publicKey.asymmetricKeyType ?? key.type}`);
  // The SPKI DER of an Ed25519 key ends with the 32 raw key bytes (RFC 8410 §4).
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  return Buffer.from(spki.subarray(spki.length - ED25519_PUBLIC_KEY_BYTES));
}

/** Parses and checks a verifier key string; throws an Error saying what is wrong. */
export function parseVerifierKey(vkey: string): VerifierKey {
  const parts = vkey.split('+');
  // The base64 key may itself contain '+', so only the first two separators count.
  if (parts.length < 3) throw new Error('verifier key must be "<name>+<hex key id>+<base64 key>"');
  const name = parts[0]!;
  const idHex = parts[1]!;
  const keyB64 = parts.slice(2).join('+');
  assertKeyName(name);
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw new Error('verifier key id must be 8 lowercase hex digits');
  const key = decodeBase64Strict(keyB64);
  if (!key || key.length !== 1 + ED25519_PUBLIC_KEY_BYTES || key[0] !== SIG_TYPE_ED25519) {
    throw new Error('verifier key must be base64 of 0x01 followed by a 32-byte Ed25519 public key');
  }
  const publicKeyRaw = Buffer.from(key.subarray(1));
  const keyId = noteKeyId(name, publicKeyRaw);
  if (keyId.toString('hex') !== idHex) throw new Error(`verifier key id ${idHex} does not match its name and key (expected ${keyId.toString('hex')})`);
  // An Ed25519 SPKI is a fixed 12-byte DER prefix followed by the raw key (RFC 8410).
  const spkiPrefix = Buffer.from('302a300506032b6570032100', 'hex');
  const publicKey = createPublicKey({ key: Buffer.concat([spkiPrefix, publicKeyRaw]), format: 'der', type: 'spki' });
  return { name, keyId, publicKeyRaw, publicKey };
}

/** Signs note text with an Ed25519 key: the text, a blank line, then "— <name> <base64(key id || signature)>". */
export function signNote(body: string, name: string, privateKey: KeyObject): string {
  assertKeyName(name);
  assertNoteText(body);
  const keyId = noteKeyId(name, ed25519PublicKeyRaw(privateKey));
  const signature = sign(null, Buffer.from(body, 'utf8'), privateKey);
  return `${body}\n${SIGNATURE_PREFIX}${name} ${Buffer.concat([keyId, signature]).toString('base64')}\n`;
}

function assertNoteText(text: string): void {
  if (!text.endsWith('\n')) throw new Error('note text must end with a newline');
  if (hasControlCharacter(text.replaceAll('\n', ''))) throw new Error('note text must not contain control characters other than newline');
  if (Buffer.from(text, 'utf8').toString('utf8') !== text) throw new Error('note text must be valid UTF-8 (no lone surrogates)');
}

function decodeNote(note: string | Uint8Array): string {
  const byteLength = typeof note === 'string' ? Buffer.byteLength(note, 'utf8') : note.length;
  if (byteLength > MAX_NOTE_BYTES) throw new Error(`signed note is ${byteLength} bytes, over the ${MAX_NOTE_BYTES}-byte limit`);
  if (typeof note !== 'string') {
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(note);
    } catch {
      throw new Error('signed note is not valid UTF-8');
    }
  }
  if (Buffer.from(note, 'utf8').toString('utf8') !== note) throw new Error('signed note is not valid UTF-8');
  return note;
}

/** Splits a note into its text and signature lines; throws on anything malformed. */
function splitNote(note: string): { text: string; signatureLines: string[] } {
  if (hasControlCharacter(note.replaceAll('\n', ''))) throw new Error('signed note contains control characters');
  if (!note.endsWith('\n')) throw new Error('signed note must end with a newline (is it truncated?)');
  if (note.split('\n').length - 1 > MAX_NOTE_LINES) throw new Error(`signed note has more than ${MAX_NOTE_LINES} lines`);
  // The text ends at the last blank line; signature lines never contain one.
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new Error('signed note has no signatures (no blank line before them)');
  const text = note.slice(0, split + 1);
  const signatureLines = note.slice(split + 2, -1).split('\n');
  if (signatureLines.length === 1 && signatureLines[0] === '') throw new Error('signed note has no signature lines');
  return { text, signatureLines };
}

/**
 * Verifies a signed note with one pinned verifier key and returns its text. Signatures by other
 * keys are ignored (signed-note: they may be witnesses or a rotated key); a signature by this key
 * that does not verify rejects the note. Throws an Error saying what is wrong.
 */
export function openNote(note: string | Uint8Array, verifierKey: string | VerifierKey): string {
  const key = typeof verifierKey === 'string' ? parseVerifierKey(verifierKey) : verifierKey;
  const { text, signatureLines } = splitNote(decodeNote(note));

  let verified = false;
  for (const line of signatureLines) {
    if (!line.startsWith(SIGNATURE_PREFIX)) throw new Error(`signed note has a malformed signature line: ${JSON.stringify(line.slice(0, 80))}`);
    const fields = line.slice(SIGNATURE_PREFIX.length).split(' ');
    if (fields.length !== 2) throw new Error('note signature line must be "— <key name> <base64 signature>"');
    const [name, sigB64] = fields as [string, string];
    assertKeyName(name);
    const blob = decodeBase64Strict(sigB64);
    if (!blob || blob.length <= KEY_ID_BYTES) throw new Error(`note signature by ${name} is not valid base64 of a key id and a signature`);
    // Only the (name, key id) pair identifies a key: a matching name with another id is a
    // different key, and is ignored like any unknown signer.
    if (name !== key.name || !blob.subarray(0, KEY_ID_BYTES).equals(key.keyId)) continue;
    const signature = blob.subarray(KEY_ID_BYTES);
    if (signature.length !== ED25519_SIGNATURE_BYTES || !verify(null, Buffer.from(text, 'utf8'), key.publicKey, signature)) {
      throw new Error(`note signature by ${key.name}+${key.keyId.toString('hex')} does not verify: the note was altered or signed by another key`);
    }
    verified = true;
  }
  if (!verified) throw new Error(`signed note has no signature by the pinned key ${key.name}+${key.keyId.toString('hex')}`);
  return text;
}

/** Verifies a signed checkpoint with one pinned verifier key (see openNote) and parses its body; throws on any problem. */
export function openCheckpoint(note: string | Uint8Array, verifierKey: string | VerifierKey): Checkpoint {
  return parseCheckpointBody(openNote(note, verifierKey));
}

/**
 * Parses tlog-checkpoint note text. Extension lines after the root are allowed by the spec and
 * ignored (they are signed, but carry nothing Gantry uses). Throws on a malformed body.
 */
export function parseCheckpointBody(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw new Error('checkpoint body must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw new Error('checkpoint body must have an origin, a tree size and a root hash line');
  const [origin, sizeText, rootText] = lines as [string, string, string, ...string[]];
  if (origin === '') throw new Error('checkpoint origin is empty');
  if (lines.some((line) => line === '')) throw new Error('checkpoint body has an empty line');
  if (!/^(0|[1-9][0-9]{0,19})$/.test(sizeText) || BigInt(sizeText) > MAX_U64) throw new Error(`checkpoint tree size ${JSON.stringify(sizeText)} is not a decimal uint64 without leading zeros`);
  const rootHash = decodeBase64Strict(rootText);
  if (!rootHash || rootHash.length !== HASH_BYTES) throw new Error(`checkpoint root hash must be base64 of ${HASH_BYTES} bytes`);
  return { origin, size: BigInt(sizeText), rootHash };
}
