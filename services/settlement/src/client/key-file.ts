// Wallet key files: JSON {"privateKey": hex, "publicKey": hex, "address": "0x..."}, mode 0600.
// The private key controls the wallet's funds, so a file is never silently replaced and a file
// other users can read is refused, as ssh does with its keys.
import { chmodSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { walletFromPrivateKey, type WalletKeys } from '../domain/signing.js';

/** The permissions a key file is written with: read and write for its owner only. */
export const KEY_FILE_MODE = 0o600;

/** The JSON a wallet key file holds. */
export interface WalletKeyFile {
  privateKey: string;
  publicKey: string;
  address: string;
}

const errnoOf = (err: unknown) => (err as NodeJS.ErrnoException).code;

/** The file's JSON text for a wallet. */
export function walletKeyFileJson(keys: WalletKeys): string {
  const file: WalletKeyFile = { privateKey: keys.privateKey.toString('hex'), publicKey: keys.publicKey.toString('hex'), address: keys.address };
  return JSON.stringify(file, null, 2) + '\n';
}

/**
 * Writes a wallet key file with mode 0600. Refuses to replace an existing file unless `force`;
 * with `force` the new file is written beside it and renamed over it, so a crash leaves one or the other.
 */
export function saveWalletKey(path: string, keys: WalletKeys, opts: { force?: boolean } = {}): void {
  const text = walletKeyFileJson(keys);
  if (!opts.force) {
    try {
      // 'wx' creates or fails: no window in which another writer's file could be replaced.
      writeFileSync(path, text, { mode: KEY_FILE_MODE, flag: 'wx' });
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') throw new Error(`${path} already exists and may hold a wallet's only key; choose another file, or replace it with --force (the old key is then lost)`);
      throw new Error(`cannot write wallet key file ${path}: ${(err as Error).message}`);
    }
    // The mode of a new file is also masked by the umask; this sets exactly 0600.
    chmodSync(path, KEY_FILE_MODE);
    return;
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, text, { mode: KEY_FILE_MODE, flag: 'wx' });
    chmodSync(tmp, KEY_FILE_MODE);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new Error(`cannot write wallet key file ${path}: ${(err as Error).message}`);
  }
}

/**
 * Reads a wallet key file. The public key and address are derived again from the private key and
 * must match the file's, so an edited or truncated file is refused rather than used.
 */
export function loadWalletKey(path: string): WalletKeys {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') throw new Error(`wallet key file ${path} does not exist: create one with 'gantry settlement keygen --out ${path}'`);
    throw new Error(`cannot read wallet key file ${path}: ${(err as Error).message}`);
  }
  const mode = statSync(path).mode & 0o777;
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new Error(`wallet key file ${path} can be read by other users (mode ${mode.toString(8)}); run 'chmod 600 ${path}' and try again`);
  }
  let parsed: Partial<WalletKeyFile>;
  try {
    parsed = JSON.parse(text) as Partial<WalletKeyFile>;
  } catch (err) {
    throw new Error(`${path} is not a wallet key file (invalid JSON: ${(err as Error).message}); create one with 'gantry settlement keygen'`);
  }
  if (typeof parsed !== 'object' || parsed === null || typeof parsed.privateKey !== 'string' || !/^[0-9a-f]{64}$/i.test(parsed.privateKey)) {
    throw new Error(`${path} is not a wallet key file: "privateKey" must be 64 hex digits (a 32-byte Ed25519 seed)`);
  }
  const keys = walletFromPrivateKey(Buffer.from(parsed.privateKey, 'hex'));
  if (parsed.publicKey !== undefined && parsed.publicKey.toLowerCase() !== keys.publicKey.toString('hex')) {
    throw new Error(`${path}: "publicKey" does not belong to "privateKey"; the file was edited or damaged, restore it from a backup`);
  }
  if (parsed.address !== undefined && parsed.address !== keys.address) {
    throw new Error(`${path}: "address" ${parsed.address} is not the private key's wallet ${keys.address}; the file was edited or damaged, restore it from a backup`);
  }
  return keys;
}
