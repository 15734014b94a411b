// Platform components call each other as workloads, authenticated by the SPIFFE ID in their
// certificate: no token, so no pod needs a key that can mint tokens.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { issueLeaf, loadCa, WorkloadDirectory, type PeerIdentity } from '../src/index.js';
import { bearer, callEcho, echoClient, startEchoPlatform, workloadCredentials, type TestPlatform } from '@gantry/test-support/harness';

describe('workload identity over mTLS', () => {
  let platform: TestPlatform;

  before(async () => {
    platform = await startEchoPlatform({ auth: { workloads: { settlement: { scopes: ['echo.read'], families: ['settlement'] } } } });
  });
  after(async () => {
    await platform.close();
  });

  test('a granted workload calls without a token; its SPIFFE ID is the principal and its grant the scopes', async () => {
    const client = echoClient(platform.address, await workloadCredentials(platform.dataDir, 'settlement'));
    try {
      const { res, err } = await callEcho(client, { message: 'hi' }, bearer(undefined));
      assert.equal(err, undefined, err?.details);
      assert.equal(res?.principal, 'spiffe://gantry.local/settlement');
      const denied = await callCount(client);
      assert.equal(denied.code, status.PERMISSION_DENIED, 'echo.write is not in its grant');
      assert.match(denied.details, /needs scope echo\.write; workload spiffe:\/\/gantry\.local\/settlement lacks it/);
    } finally {
      client.close();
    }
  });

  test('a certificate of a workload without a grant, and the plain dev client certificate, are UNAUTHENTICATED without a token', async () => {
    const stranger = echoClient(platform.address, await workloadCredentials(platform.dataDir, 'approvals'));
    const devClient = echoClient(platform.address, platform.clientCredentials);
    try {
      const a = await callEcho(stranger, { message: 'hi' }, bearer(undefined));
      assert.equal(a.err?.code, status.UNAUTHENTICATED);
      assert.match(a.err!.details, /workload approvals has no grant here/);
      assert.doesNotMatch(a.err!.details, /settlement/, 'the granted workloads are not listed to a stranger');
      const b = await callEcho(devClient, { message: 'hi' }, bearer(undefined));
      assert.equal(b.err?.code, status.UNAUTHENTICATED);
      assert.match(b.err!.details, /missing bearer token.*workload dev-client has no grant here/);
    } finally {
      stranger.close();
      devClient.close();
    }
  });

  test('a token sent from a workload certificate acts as the token, not as the workload', async () => {
    const client = echoClient(platform.address, await workloadCredentials(platform.dataDir, 'settlement'));
    try {
      const { res, err } = await callEcho(client, { message: 'hi' }, bearer(platform.token('alice', ['echo.read'])));
      assert.equal(err, undefined, err?.details);
      assert.equal(res?.principal, 'alice');
    } finally {
      client.close();
    }
  });

  test('a certificate naming the workload under another trust domain is nobody', async () => {
    const dir = join(platform.dataDir, 'pki');
    const ca = await loadCa(readFileSync(join(dir, 'ca.crt'), 'utf8'), readFileSync(join(dir, 'ca.key'), 'utf8'));
    const leaf = await issueLeaf(ca, { name: 'settlement', trustDomain: 'evil.example', usage: 'client' });
    const client = echoClient(platform.address, credentials.createSsl(readFileSync(join(dir, 'ca.crt')), Buffer.from(leaf.keyPem), Buffer.from(leaf.certPem)));
    try {
      const { err } = await callEcho(client, { message: 'hi' }, bearer(undefined));
      assert.equal(err?.code, status.UNAUTHENTICATED);
    } finally {
      client.close();
    }
  });
});

describe('WorkloadDirectory', () => {
  const directory = new WorkloadDirectory('gantry.local', new Map([['settlement', { scopes: ['log.append'], families: ['settlement'] }]]));
  const peer = (uris: string[]): PeerIdentity => ({ address: '127.0.0.1:1', uris, dnsNames: [], commonName: 'settlement' });

  test('only one SPIFFE ID of the trust domain names a workload; the CN never does', () => {
    assert.equal(directory.principalFor(peer(['spiffe://gantry.local/settlement']))?.workload?.name, 'settlement');
    assert.deepEqual([...directory.principalFor(peer(['spiffe://gantry.local/settlement']))!.workload!.families], ['settlement']);
    assert.equal(directory.principalFor(peer([])), undefined, 'a CN alone is not an identity');
    assert.equal(directory.principalFor(peer(['spiffe://gantry.local/settlement', 'spiffe://gantry.local/log'])), undefined, 'two IDs are ambiguous');
    assert.equal(directory.principalFor(peer(['spiffe://gantry.local/settlement/x'])), undefined);
    assert.equal(directory.principalFor(peer(['spiffe://gantry.localhost/settlement'])), undefined);
  });

  test('invalid workload names are refused when the directory is built', () => {
    assert.throws(() => new WorkloadDirectory('gantry.local', new Map([['Settle/ment', { scopes: [], families: [] }]])), /invalid workload name/);
  });
});

/** Calls Collect (needs echo.write) with no message, resolving with its status. */
function callCount(client: ReturnType<typeof echoClient>): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    const call = (client as unknown as { collect: (md: unknown, cb: (err: { code: number; details: string } | null) => void) => { end(): void } }).collect(bearer(undefined), (err) => resolve(err ?? { code: status.OK, details: '' }));
    call.end();
  });
}
