import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { checkpointBody, signNote, verifierKeyString } from './domain/checkpoint.js';

/** Raw 32-byte Ed25519 public key (the JWK `x`). */
function rawPublicKey(key: KeyObject): Buffer {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  return Buffer.from(jwk.x!, 'base64url');
}

/** Signs C2SP checkpoints for every partition with the log's Ed25519 key. */
export class CheckpointSigner {
  /** The note verifier key clients pin: "<name>+<key id>+<base64 key>". */
  readonly verifierKey: string;

  constructor(private readonly origin: string, private readonly privateKey: KeyObject) {
    if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('the checkpoint signing key must be an Ed25519 key');
    this.verifierKey = verifierKeyString(origin, rawPublicKey(privateKey));
  }

  /** The partition's tree head as a signed note; its origin is "<log origin>/<partition>". */
  checkpoint(partition: string, size: bigint, rootHash: Buffer) {
    const body = checkpointBody(`${this.origin}/${partition}`, size, rootHash);
    return { checkpoint: signNote(body, this.origin, this.privateKey), size, rootHash, keyName: this.origin, verifierKey: this.verifierKey };
  }
}

/** Loads the signing key (PKCS#8 PEM), or creates one at `path` for local use. */
export async function loadOrCreateSigningKey(path: string, create: boolean): Promise<KeyObject> {
  if (!existsSync(path)) {
    if (!create) throw new Error(`checkpoint signing key ${path} does not exist (GANTRY_LOG_SIGNING_KEY_FILE)`);
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    await writeFile(path, privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, { mode: 0o600 });
    await chmod(path, 0o600);
  }
  return createPrivateKey(readFileSync(path));
}
