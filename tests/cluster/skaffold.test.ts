// skaffold.yaml against the real cluster: `skaffold run` builds the image (scripts/image/build.sh),
// pushes it to the cluster's registry (localhost:5000), deploys charts/gantry with ci/dev-values.yaml,
// waits for the rollout (its status check) and port-forwards gRPC to the host, where a client reaches
// the platform over mTLS through the forward. skaffold and its Helm 3: scripts/test-env/skaffold.sh.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bearerMetadata, checkHealth, clientCredentials, clientOptions, streamOf, unary } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { deleteCrds } from '../kube/operator-support.js';
import { repoRoot } from '../support/gantry-process.js';
import { ok, run } from '../support/kube.js';
import { Cleanup, clientMaterial, exclusive, testCluster, waitFor, type TestCluster } from './support.js';

const CI = process.env.CI === 'true';
const cluster = await testCluster();
let skip: string | false = typeof cluster === 'string' ? cluster : false;
let skaffoldBin = '';
if (!skip) {
  // Locally skaffold is not built inside a test run (minutes): --no-build exits 4 with the command.
  const built = await run('bash', [join(repoRoot, 'scripts/test-env/skaffold.sh'), ...(CI ? [] : ['--no-build'])], process.env, undefined, CI ? 40 * 60_000 : 60_000);
  if (built.code === 0) skaffoldBin = built.stdout.trim();
  else if (CI) throw new Error(`skaffold must run under CI: ${built.stderr}`);
  else skip = `skaffold is not built ('bash scripts/test-env/skaffold.sh' exited ${built.code}): ${built.stderr.trim()}`;
}
const REGISTRY = 'localhost:5000';

describe('skaffold run on the real cluster: build, push to its registry, deploy, port-forward', { skip }, () => {
  const c = cluster as TestCluster;
  const cleanup = new Cleanup();
  const namespace = `skaffold-${Date.now().toString(36)}`;
  let env: NodeJS.ProcessEnv;
  after(() => cleanup.run());

  before(async () => {
    await exclusive(cleanup);
    const tools = ok(await run('bash', [join(repoRoot, 'scripts/test-env/helm.sh')], process.env), 'helm.sh').trim();
    // skaffold's directory first: its Helm 3 (skaffold v2.16 cannot drive Helm 4), then kubectl.
    env = { ...process.env, PATH: [dirname(skaffoldBin), tools, process.env.PATH].join(':'), KUBECONFIG: c.kubeconfig, SKAFFOLD_UPDATE_CHECK: 'false', SKAFFOLD_INTERACTIVE: 'false' };
    ok(await c.kubectl(['create', 'namespace', namespace]), 'kubectl create namespace');
    cleanup.add(async () => {
      await run(skaffoldBin, ['delete', '-p', 'local-base', '--namespace', namespace], env, undefined, 120_000);
      await deleteCrds(c);
      await c.kubectl(['delete', 'namespace', namespace, '--wait=false']);
    });
  });

  test('skaffold run -p local-base,push --default-repo=localhost:5000 --port-forward: the pods run the pushed image and the forwarded port answers over mTLS', { timeout: 420_000 }, async (t) => {
    const tag = `skaffold-${Date.now().toString(36)}`;
    const started = Date.now();
    const child = spawn(
      skaffoldBin,
      ['run', '-p', 'local-base,push', `--default-repo=${REGISTRY}`, '--namespace', namespace, '--tag', tag, '--port-forward=user', '--tail=false', '--cache-artifacts=false'],
      { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    t.after(async () => {
      child.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    });
    // "Port forwarding service/gantry-gantry in namespace <ns>, remote port 7443 -> http://127.0.0.1:<port>"
    const forwarded = waitFor('skaffold to build, deploy and port-forward', 360_000, async () => {
      if (Date.now() - started > 355_000) throw new Error(`no port-forward yet; skaffold said:\n${output}`);
      const m = /Port forwarding service\/gantry-gantry in namespace \S+, remote port 7443 -> (?:http:\/\/)?127\.0\.0\.1:(\d+)/.exec(output);
      return m ? Number(m[1]) : undefined;
    }, 500);
    const failed = exited.then((code) => Promise.reject(new Error(`skaffold run exited ${code} before port-forwarding:\n${output}`)));
    const port = await Promise.race([forwarded, failed]);
    t.diagnostic(`skaffold run: built, pushed, deployed and forwarding after ${Date.now() - started} ms`);

    const images = ok(await c.kubectl(['get', 'deployments', '--namespace', namespace, '-o', 'jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}{"\\n"}{end}']), 'kubectl get deployments').trim().split('\n');
    assert.deepEqual([...new Set(images)], [`${REGISTRY}/gantry:${tag}`], 'every Deployment runs the image skaffold pushed to the cluster registry');

    const m = await clientMaterial(c, { namespace, tenantNamespace: namespace, name: 'gantry', mode: 'monolithic', readyMs: 0 });
    const tls = { ...m.tls, serverName: 'gantry-gantry' };
    const health = await checkHealth(`127.0.0.1:${port}`, clientCredentials(tls), clientOptions(tls), 'gantry.log.v1.LogService', 10_000, true);
    assert.equal(health.status, 'SERVING', `health through the port-forward: ${health.err?.message ?? ''}`);
    const log = new logv1.LogServiceClient(`127.0.0.1:${port}`, clientCredentials(tls), clientOptions(tls));
    t.after(() => log.close());
    const md = bearerMetadata(m.token('skaffold-test', ['log.append', 'log.read']));
    const appended = await unary(log.append, log, { partition: 'skaffold', data: Buffer.from('through the port-forward'), idempotencyKey: '' }, md);
    const read: string[] = [];
    for await (const chunk of streamOf(log.read({ partition: 'skaffold', startSeq: appended.seq, limit: 1n }, md))) for (const e of chunk.entries) read.push(Buffer.from(e.data).toString());
    assert.deepEqual(read, ['through the port-forward']);
  });
});
