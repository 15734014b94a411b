// `gantry keys ensure` against a real API server: it makes every key of the plan once, keeps what
// exists (a second run changes nothing), renews certificates near their end, and takes over the
// Secrets an older chart rendered (an RSA CA it cannot sign with, leaves without workload IDs).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { ensureKeys, keysPlanSchema, type KeysPlan } from '@gantry/cli/keys';
import { ok, testKube, type TestKube } from '../support/kube.js';

const DAY_MS = 24 * 3600 * 1000;

function planFor(): KeysPlan {
  return keysPlanSchema.parse({
    labels: { 'app.kubernetes.io/instance': 'gy' },
    tls: {
      caSecret: 'gy-ca',
      caDays: 3650,
      certDays: 90,
      renewBeforeDays: 30,
      leaves: [
        { secret: 'gy-log-tls', workload: 'log', commonName: 'gy-log', dnsNames: ['gy-log', 'gy-log-headless'], usage: 'both' },
        { secret: 'gy-operator-tls', workload: 'operator', commonName: 'gy-operator', dnsNames: ['gy-operator'], usage: 'client' },
      ],
    },
    logSigningKey: { secret: 'gy-log-signing-key' },
    webhooksKeyRing: { secret: 'gy-webhooks-keys' },
    devIssuer: { secret: 'gy-dev-jwt', jwksSecret: 'gy-dev-jwks' },
  });
}

type SecretJson = { metadata: { resourceVersion: string; annotations?: Record<string, string>; labels?: Record<string, string> }; data: Record<string, string> };

async function secret(k: TestKube, ns: string, name: string): Promise<SecretJson> {
  return JSON.parse(ok(await k.kubectl(['get', 'secret', name, '--namespace', ns, '-o', 'json']), `get secret ${name}`)) as SecretJson;
}

const text = (s: SecretJson, key: string) => Buffer.from(s.data[key] ?? '', 'base64').toString();
const NAMES = ['gy-ca', 'gy-log-tls', 'gy-operator-tls', 'gy-log-signing-key', 'gy-webhooks-keys', 'gy-dev-jwt', 'gy-dev-jwks'];

describe('gantry keys ensure', () => {
  test('makes every key and certificate once, with workload IDs; a second run changes nothing; certificates near their end are issued again and nothing else is', async (t) => {
    const k = await testKube();
    if (typeof k === 'string') return t.skip(k);
    const ns = await k.namespace(t, 'keys');
    const config = kc(k);
    const lines: string[] = [];
    await ensureKeys(config, { namespace: ns, plan: planFor(), report: (l) => lines.push(l) });
    const first = Object.fromEntries(await Promise.all(NAMES.map(async (n) => [n, await secret(k, ns, n)] as const)));
    for (const [name, s] of Object.entries(first)) {
      assert.equal(s.metadata.annotations?.['helm.sh/resource-policy'], 'keep', `${name} outlives the release`);
      assert.equal(s.metadata.labels?.['app.kubernetes.io/managed-by'], 'gantry-keys');
    }
    const ca = new X509Certificate(text(first['gy-ca']!, 'tls.crt'));
    const log = new X509Certificate(text(first['gy-log-tls']!, 'tls.crt'));
    assert.ok(log.verify(ca.publicKey), 'the leaf is signed by the CA');
    assert.equal(text(first['gy-log-tls']!, 'ca.crt'), text(first['gy-ca']!, 'tls.crt'));
    assert.match(log.subjectAltName!, /URI:spiffe:\/\/gantry\.local\/log/);
    assert.match(log.subjectAltName!, /DNS:gy-log-headless/);
    assert.match(new X509Certificate(text(first['gy-operator-tls']!, 'tls.crt')).subjectAltName!, /URI:spiffe:\/\/gantry\.local\/operator/);
    assert.match(text(first['gy-webhooks-keys']!, 'keys'), /^k1=[A-Za-z0-9+/]{43}=\n$/);
    const jwks = JSON.parse(text(first['gy-dev-jwks']!, 'jwks.json')) as { keys: { kid: string; d?: string }[] };
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0]!.d, undefined, 'the JWKS holds the public half only');

    await ensureKeys(config, { namespace: ns, plan: planFor() });
    for (const name of NAMES) assert.equal((await secret(k, ns, name)).metadata.resourceVersion, first[name]!.metadata.resourceVersion, `${name} is untouched by a second run`);

    // 61 days on, 29 are left of each 90-day leaf: under renewBeforeDays (30).
    await ensureKeys(config, { namespace: ns, plan: planFor(), now: () => new Date(Date.now() + 61 * DAY_MS), report: (l) => lines.push(l) });
    for (const name of ['gy-log-tls', 'gy-operator-tls']) {
      const renewed = await secret(k, ns, name);
      assert.notEqual(text(renewed, 'tls.crt'), text(first[name]!, 'tls.crt'), `${name} is issued again`);
      assert.ok(Date.parse(new X509Certificate(text(renewed, 'tls.crt')).validTo) > Date.now() + 140 * DAY_MS);
    }
    for (const name of ['gy-ca', 'gy-log-signing-key', 'gy-webhooks-keys', 'gy-dev-jwt', 'gy-dev-jwks']) {
      assert.equal((await secret(k, ns, name)).metadata.resourceVersion, first[name]!.metadata.resourceVersion, `${name} is never regenerated`);
    }
    assert.ok(lines.some((l) => /gy-log-tls: certificate issued for log \(it expires .* within renewBeforeDays \(30\)\)/.test(l)), lines.join('\n'));
  });

  test("takes over an older chart's Secrets: an RSA CA is replaced by one that signs workload certificates, leaves without an ID are issued again, every Secret is marked kept", async (t) => {
    const k = await testKube();
    if (typeof k === 'string') return t.skip(k);
    const ns = await k.namespace(t, 'keys-upgrade');
    const dir = mkdtempSync(join(tmpdir(), 'gantry-keys-'));
    const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30', '-subj', '/CN=gy-ca']);
    ok(await k.kubectl(['create', 'secret', 'tls', 'gy-ca', '--namespace', ns, `--cert=${join(dir, 'ca.crt')}`, `--key=${join(dir, 'ca.key')}`]), 'an old RSA CA');
    ok(await k.kubectl(['create', 'secret', 'generic', 'gy-webhooks-keys', '--namespace', ns, '--from-literal=keys=k1=b2xkIGtleSByaW5nIGtlcHQgZm9yIGV2ZXIgISEhISE=\n']), 'an old key ring');
    await ensureKeys(kc(k), { namespace: ns, plan: planFor() });
    const ca = await secret(k, ns, 'gy-ca');
    assert.notEqual(text(ca, 'tls.crt'), readFileSync(join(dir, 'ca.crt'), 'utf8'), 'the RSA CA is replaced');
    assert.equal(new X509Certificate(text(ca, 'tls.crt')).publicKey.asymmetricKeyType, 'ec');
    const ring = await secret(k, ns, 'gy-webhooks-keys');
    assert.equal(text(ring, 'keys'), 'k1=b2xkIGtleSByaW5nIGtlcHQgZm9yIGV2ZXIgISEhISE=\n', 'an existing key ring is never replaced');
    assert.equal(ring.metadata.annotations?.['helm.sh/resource-policy'], 'keep', 'and is marked kept, so an upgrade that stops rendering it does not delete it');
  });
});

function kc(k: TestKube): KubeConfig {
  const config = new KubeConfig();
  config.loadFromFile(k.kubeconfig);
  return config;
}
