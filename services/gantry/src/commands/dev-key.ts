import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { devJwks } from '@gantry/kit';
import { loadProgramConfig } from '../config.js';

export interface DevKeyImportOptions {
  keyFile: string;
  dataDir?: string;
}

/** What `writeDevSigningKey` laid out. */
export interface ImportedDevKey {
  kid: string;
  keyFile: string;
  jwksFile: string;
}

/** The EC P-256 private key in `pem`, or an error naming `origin` and the key it needs instead. */
export function parseDevSigningKey(pem: string | Buffer, origin: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new Error(`${origin} is not a PEM private key (${(err as Error).message}); pass the dev key's private half, e.g. the signing-key.pem of the chart's <release>-dev-jwt Secret`);
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    const found = key.asymmetricKeyType === 'ec' ? `EC ${key.asymmetricKeyDetails?.namedCurve}` : key.asymmetricKeyType;
    throw new Error(`${origin} holds a key of type ${found}; dev tokens are ES256, so the key must be EC P-256 (openssl ecparam -name prime256v1 -genkey)`);
  }
  return key;
}

/**
 * Lays out `key` under `dir` exactly as the kit's `ensureDevSigningKey` makes a dev key there
 * (signing-key.pem, PKCS#8, 0600, and jwks.json with its public JWK), so the process, `gantry token`
 * and every pod given the same key trust each other's tokens. Overwrites an earlier key.
 */
export async function writeDevSigningKey(dir: string, key: KeyObject): Promise<ImportedDevKey> {
  const keyFile = join(dir, 'signing-key.pem');
  const jwksFile = join(dir, 'jwks.json');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { kid, text } = devJwks(createPublicKey(key).export({ format: 'jwk' }));
  await writeFile(keyFile, key.export({ format: 'pem', type: 'pkcs8' }) as string, { mode: 0o600 });
  await chmod(keyFile, 0o600);
  await writeFile(jwksFile, text);
  return { kid, keyFile, jwksFile };
}

/**
 * `gantry dev-key import`: makes a given ES256 private key the dev signing key under
 * <data dir>/jwt, where `gantry serve` and `gantry token` look for it. The chart's dev-key init
 * container runs it, so every pod trusts the one key of the release's <release>-dev-jwt Secret.
 */
export async function devKeyImport(opts: DevKeyImportOptions): Promise<void> {
  const config = loadProgramConfig({ overrides: opts.dataDir ? { dataDir: opts.dataDir } : {} });
  let pem: Buffer;
  try {
    pem = readFileSync(opts.keyFile);
  } catch (err) {
    throw new Error(`cannot read --key-file ${opts.keyFile}: ${(err as Error).message}; mount the dev key there or pass the right path`);
  }
  const imported = await writeDevSigningKey(resolve(config.dataDir, 'jwt'), parseDevSigningKey(pem, opts.keyFile));
  process.stdout.write(`Imported dev signing key ${imported.kid} from ${opts.keyFile}: ${imported.keyFile}, ${imported.jwksFile}\n`);
}

/** `gantry dev-key`: the development JWT signing key. */
export function devKeyCommand(): Command {
  const cmd = new Command('dev-key').description('manage the development JWT signing key');
  cmd
    .command('import')
    .description("make a given ES256 private key the dev signing key (<data dir>/jwt) that serve and token use; the chart's dev-key init container runs it")
    .requiredOption('--key-file <pem>', 'the EC P-256 private key (PEM)')
    .option('--data-dir <dir>', "data directory (default: GANTRY_DATA_DIR, else the config's dataDir)")
    .action(devKeyImport);
  return cmd;
}
