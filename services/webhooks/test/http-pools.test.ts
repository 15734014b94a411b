// The sender's keep-alive pools against a real local HTTP server: connections are reused within a
// pool, an owner's allow-listed connection never serves another owner or an endpoint without that
// allowance (each is checked on its own connect), and the number of pools is bounded.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressGuard } from '../src/domain/address-guard.js';
import { HttpSender, poolKey, type Resolver } from '../src/delivery/http.js';

const TIMEOUT_MS = 5000;
const LIMITS = { connectionsPerOrigin: 4, maxPools: 2, maxOriginsPerPool: 10 };

describe('the delivery sender\'s connection pools', () => {
  let server: Server;
  let port = 0;
  /** Remote ports of the connections the server accepted. */
  const connections: number[] = [];
  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200).end('ok'));
    });
    server.on('connection', (s) => connections.push(s.remotePort!));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  // A name, so that every new connection goes through the guarded lookup.
  const resolver: Resolver = async () => [{ address: '127.0.0.1', family: 4 }];
  const url = () => `http://receiver.test:${port}/hook`;
  const post = (sender: HttpSender, owner: string, internalApproved = false) =>
    sender.post(url(), { 'content-type': 'application/json' }, Buffer.from('{}'), AbortSignal.timeout(TIMEOUT_MS), { owner, internalApproved });

  test('attempts of one owner reuse kept-alive connections; another owner is checked on its own connection and refused', async () => {
    const sender = new HttpSender(new AddressGuard(['alice=127.0.0.1/32']), resolver, TIMEOUT_MS, LIMITS);
    try {
      const before = connections.length;
      for (let i = 0; i < 10; i++) assert.equal((await post(sender, 'alice')).status, 200);
      // undici may open a second connection while the first is finishing its response; no more.
      const opened = connections.length - before;
      assert.ok(opened >= 1 && opened <= 2, `ten attempts in a row opened ${opened} connections`);
      const bob = await post(sender, 'bob');
      assert.equal(bob.status, 0);
      assert.match(bob.error, /refused address/);
      assert.equal(connections.length - before, opened, 'bob was refused before connecting: alice\'s connections did not serve him');
    } finally {
      await sender.close();
    }
  });

  test('pools are keyed by owner for allow-listed targets (even with the same entries), shared for public ones, and bounded', async () => {
    const guard = new AddressGuard(['127.0.0.1/32']);
    const approved = (owner: string) => guard.allowance({ owner, internalApproved: true });
    assert.notEqual(poolKey({ owner: 'alice', internalApproved: true }, approved('alice')), poolKey({ owner: 'bob', internalApproved: true }, approved('bob')));
    assert.equal(poolKey({ owner: 'alice', internalApproved: false }, []), poolKey({ owner: 'bob', internalApproved: false }, []));
    const sender = new HttpSender(guard, resolver, TIMEOUT_MS, LIMITS);
    try {
      const before = connections.length;
      for (const owner of ['alice', 'bob', 'carol']) assert.equal((await post(sender, owner, true)).status, 200);
      assert.equal(connections.length - before, 3, 'one connection per owner');
      assert.equal(sender.pools, LIMITS.maxPools, 'the least recently used pool was closed');
    } finally {
      await sender.close();
    }
  });
});
