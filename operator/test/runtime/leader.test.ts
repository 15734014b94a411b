import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { CoordinationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { testKube } from '../../../tests/support/kube.js';
import { LeaderElector } from '../../src/runtime/index.js';
import { CuttableProxy, eventually, loadKubeConfig, serverUrl, testLogger } from './support.js';

const timings = { leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 300 };

interface Candidate {
  identity: string;
  elector: LeaderElector;
  stop: AbortController;
  /** Resolves when run() returns. */
  ran: Promise<void>;
  startedAtMs?: number;
  stoppedAtMs?: number;
}

function candidate(t: TestContext, kc: KubeConfig, namespace: string, identity: string): Candidate {
  const elector = new LeaderElector({ kc, namespace, name: 'gantry-operator', identity, log: testLogger(), ...timings });
  const stop = new AbortController();
  const c: Candidate = { identity, elector, stop, ran: Promise.resolve() };
  c.ran = elector.run(
    {
      onStartedLeading: (signal) =>
        new Promise<void>((resolve) => {
          c.startedAtMs = Date.now();
          signal.addEventListener('abort', () => ((c.stoppedAtMs = Date.now()), resolve()), { once: true });
        }),
    },
    stop.signal,
  );
  t.after(async () => {
    stop.abort();
    await c.ran;
  });
  return c;
}

async function setUp(t: TestContext) {
  const kube = await testKube();
  if (typeof kube === 'string') return void t.skip(kube);
  const kc = loadKubeConfig(kube.kubeconfig);
  const namespace = await kube.namespace(t, 'leader');
  const holder = async () => (await kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ namespace, name: 'gantry-operator' })).spec?.holderIdentity ?? '';
  return { kube, kc, namespace, holder };
}

/** Waits until exactly one candidate leads, checking that two never do at once. */
async function oneLeader(candidates: Candidate[]): Promise<Candidate> {
  let leaders: Candidate[] = [];
  await eventually(() => {
    leaders = candidates.filter((c) => c.elector.isLeader);
    assert.ok(leaders.length <= 1, 'two leaders at once');
    return leaders.length === 1;
  }, 'a leader', 5_000);
  return leaders[0]!;
}

test('of two candidates on one Lease exactly one leads, the Lease names it, and a graceful stop hands over at once', async (t) => {
  const env = await setUp(t);
  if (!env) return;
  const a = candidate(t, env.kc, env.namespace, 'candidate-a');
  const b = candidate(t, env.kc, env.namespace, 'candidate-b');
  const leader = await oneLeader([a, b]);
  const standby = leader === a ? b : a;
  // Stays that way across several renewals.
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(leader.elector.isLeader && !standby.elector.isLeader);
  }
  assert.equal(await env.holder(), leader.identity);

  const stoppedAtMs = Date.now();
  leader.stop.abort();
  await leader.ran;
  assert.equal(leader.elector.isLeader, false);
  await eventually(() => standby.elector.isLeader, 'the standby to lead', 3_000);
  const handoverMs = standby.startedAtMs! - stoppedAtMs;
  // Released, so the standby need not wait out the lease: one retry period (plus jitter and a request).
  assert.ok(handoverMs < timings.retryPeriodMs * 1.2 + 500, `handover took ${handoverMs} ms`);
  assert.equal(await env.holder(), standby.identity);
});

test('a leader cut off from the API server stops leading within the renew deadline, and the standby takes over within the lease duration', async (t) => {
  const env = await setUp(t);
  if (!env) return;
  const proxy = await CuttableProxy.start(serverUrl(env.kc));
  t.after(() => proxy.close());
  // The first candidate talks through the proxy and leads; the second talks directly.
  const cutOff = candidate(t, loadKubeConfig(env.kube.kubeconfig, proxy.port), env.namespace, 'candidate-cut-off');
  await eventually(() => cutOff.elector.isLeader, 'the first candidate to lead', 5_000);
  const standby = candidate(t, env.kc, env.namespace, 'candidate-standby');
  await new Promise((r) => setTimeout(r, 500)); // the standby has seen the Lease renewed

  // A crash as far as the Lease is concerned: no more renewals and no release.
  const cutAtMs = Date.now();
  proxy.sever();
  await eventually(() => standby.elector.isLeader, 'the standby to take over', 5_000);
  const takeoverMs = standby.startedAtMs! - cutAtMs;
  assert.ok(takeoverMs <= timings.leaseDurationMs + 2 * timings.retryPeriodMs * 1.2 + 500, `takeover took ${takeoverMs} ms`);
  assert.ok(takeoverMs >= timings.leaseDurationMs - timings.retryPeriodMs * 1.2, `took over after ${takeoverMs} ms, before the lease could have expired`);
  await cutOff.ran; // it gave up leading on its own, without being asked to stop
  assert.equal(cutOff.elector.isLeader, false);
  assert.ok(cutOff.stoppedAtMs! < standby.startedAtMs!, 'the old leader stopped before the new one started');
  assert.equal(await env.holder(), standby.identity);
});
