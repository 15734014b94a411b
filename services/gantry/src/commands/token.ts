import { resolve } from 'node:path';
import { ensureDevSigningKey, mintToken } from '@gantry/kit';
import { allScopes } from '../registry.js';
import { loadProgramConfig } from '../config.js';

export interface TokenOptions {
  subject: string;
  scope: string[];
  allScopes?: boolean;
  ttl: string;
  config?: string;
}

/** `gantry token`: mints a dev JWT signed by the dev key the local server trusts. */
export async function token(opts: TokenOptions): Promise<void> {
  const config = loadProgramConfig({ file: opts.config });
  if (config.auth.jwksFile || config.auth.jwksUrl) {
    throw new Error('gantry token signs with the dev key only; this config trusts another issuer. Get a token from that issuer instead.');
  }
  const scopes = opts.allScopes ? allScopes() : opts.scope;
  if (scopes.length === 0) throw new Error('name at least one --scope (e.g. --scope log.read) or pass --all-scopes');
  const ttlSec = Number(opts.ttl);
  if (!Number.isInteger(ttlSec) || ttlSec < 1 || ttlSec > config.auth.maxTokenAgeSec) {
    throw new Error(`--ttl must be a whole number of seconds between 1 and ${config.auth.maxTokenAgeSec}`);
  }
  const key = await ensureDevSigningKey(resolve(config.dataDir, 'jwt'));
  process.stdout.write(
    mintToken({ subject: opts.subject, scopes, issuer: config.auth.issuer, audience: config.auth.audience, ttlSec, key: key.privateKey, kid: key.kid }) + '\n',
  );
}
