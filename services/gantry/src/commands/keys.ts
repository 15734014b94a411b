import { existsSync, readFileSync } from 'node:fs';
import { Command } from 'commander';
import { KubeConfig } from '@kubernetes/client-node';
import { ensureKeys } from '../keys/ensure.js';
import { readKeysPlan } from '../keys/plan.js';

const SERVICE_ACCOUNT_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export interface KeysEnsureOptions {
  plan: string;
  namespace?: string;
  kubeconfig?: string;
}

/** `gantry keys ensure`: the chart's keys Job (at install and upgrade) and renewal CronJob run it. */
export async function keysEnsure(opts: KeysEnsureOptions): Promise<void> {
  const plan = readKeysPlan(opts.plan);
  const kc = new KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else kc.loadFromDefault();
  const namespace = opts.namespace ?? (existsSync(SERVICE_ACCOUNT_NAMESPACE_FILE) ? readFileSync(SERVICE_ACCOUNT_NAMESPACE_FILE, 'utf8').trim() : undefined);
  if (!namespace) throw new Error('no namespace: pass --namespace (in a pod it is the ServiceAccount\'s)');
  await ensureKeys(kc, { namespace, plan, report: (line) => process.stdout.write(`${line}\n`) });
  process.stdout.write(`keys of namespace ${namespace} are in place\n`);
}

/** `gantry keys`: the platform's keys and certificates in a cluster. */
export function keysCommand(): Command {
  const cmd = new Command('keys').description("the platform's keys and certificates in a Kubernetes namespace");
  cmd
    .command('ensure')
    .description('create what is missing (CA, workload certificates, the log key, the webhooks key ring, a dev issuer) and renew certificates near expiry; never regenerates a key that exists')
    .requiredOption('--plan <file>', 'the plan the chart renders (JSON: Secret names and lifetimes, no key material)')
    .option('--namespace <ns>', "where the Secrets live (default: the pod's namespace)")
    .option('--kubeconfig <file>', 'a kubeconfig (default: in-cluster, else KUBECONFIG)')
    .action(keysEnsure);
  return cmd;
}
