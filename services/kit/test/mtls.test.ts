import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, status, type ChannelCredentials } from '@grpc/grpc-js';
import { createCa, devPkiPaths, issueLeaf, type PemPair } from '../src/index.js';
import { bearer, callEcho, echoClient, eventually, startEchoPlatform, type TestPlatform } from '@gantry/test-support/harness';

/** Each attempt gets its own connection, so a handshake result is never reused from another client. */
const OWN_CHANNEL = { 'grpc.use_local_subchannel_pool': 1 };

describe('mutual TLS', () => {
  let platform: TestPlatform;
  let caPem: Buffer;

  /** One Echo call on a fresh channel with `creds`; resolves with the outcome. */
  async function echoWith(creds: ChannelCredentials, deadlineMs = 3000) {
    const client = echoClient(platform.address, creds, OWN_CHANNEL);
    try {
      return await callEcho(client, { message: 'hello' }, bearer(platform.token('alice', ['echo.read'])), deadlineMs);
    } finally {
      client.close();
    }
  }

  before(async () => {
    platform = await startEchoPlatform({ tls: { reloadIntervalMs: 1000 } });
    caPem = readFileSync(devPkiPaths(join(platform.dataDir, 'pki')).caFile);
  });
  after(() => platform.close());

  test('a client presenting no certificate is refused', async () => {
    const { res, err } = await echoWith(credentials.createSsl(caPem));
    assert.equal(res, undefined);
    assert.equal(err?.code, status.UNAVAILABLE);
  });

  test('a client certificate from another CA is refused', async () => {
    const otherCa = await createCa('Not the Gantry CA');
    const impostor = await issueLeaf(otherCa, { name: 'dev-client', usage: 'client' });
    const { res, err } = await echoWith(credentials.createSsl(caPem, Buffer.from(impostor.keyPem), Buffer.from(impostor.certPem)));
    assert.equal(res, undefined);
    assert.equal(err?.code, status.UNAVAILABLE);
  });

  test("a good client's certificate identity reaches the handler", async () => {
    const { res, err } = await echoWith(platform.clientCredentials);
    assert.equal(err, undefined);
    assert.equal(res?.peerIdentity, 'dev-client');
    assert.equal(res?.principal, 'alice');
  });

  // Last: it replaces the platform's PKI.
  test('rotated CA and server certificate files apply to new connections without a restart', async () => {
    const pki = devPkiPaths(join(platform.dataDir, 'pki'));
    const oldClient = { certPem: readFileSync(pki.clientCertFile), keyPem: readFileSync(pki.clientKeyFile) };
    const newCa = await createCa('Gantry rotated CA');
    const newServer = await issueLeaf(newCa, { name: 'gantry-server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], usage: 'both' });
    const newClient = await issueLeaf(newCa, { name: 'rotated-client', usage: 'client' });
    const withNewCa = (leaf: PemPair | { certPem: Buffer; keyPem: Buffer }) =>
      credentials.createSsl(Buffer.from(newCa.certPem), Buffer.from(leaf.keyPem), Buffer.from(leaf.certPem));

    // Before the rotation the new client is a stranger: the check below cannot pass by accident.
    assert.equal((await echoWith(withNewCa(newClient), 1000)).err?.code, status.UNAVAILABLE);

    // Replace each file atomically, as a Secret volume update does, so no read sees half a file.
    const replace = (path: string, pem: string) => {
      writeFileSync(`${path}.next`, pem, { mode: 0o600 });
      renameSync(`${path}.next`, path);
    };
    replace(pki.serverKeyFile, newServer.keyPem);
    replace(pki.serverCertFile, newServer.certPem);
    replace(pki.caFile, newCa.certPem);

    let last: Awaited<ReturnType<typeof echoWith>> = {};
    const rotated = await eventually(async () => {
      last = await echoWith(withNewCa(newClient), 1000);
      return last.res !== undefined;
    }, 6000, 200);
    assert.ok(rotated, `a client of the new CA was still refused 6 s after the rotation: ${last.err?.message}`);
    assert.equal(last.res?.peerIdentity, 'rotated-client');

    // The old client certificate, even trusting the new server, is no longer accepted.
    const { res, err } = await echoWith(withNewCa(oldClient));
    assert.equal(res, undefined);
    assert.equal(err?.code, status.UNAVAILABLE);
  });
});
