// FeatureFlag → the flag in the FlagsService of every target service. Per service the status says
// whether it holds this generation; a service that is down is retried with backoff while the others
// keep theirs. Flags are written with source "operator:<namespace>/<name>", which is how the
// operator tells its own flags from those set with the CLI or by another FeatureFlag.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { flagFromSpec, GantryError, validateFlag, type Logger } from '@gantry/kit';
import { flagsv1 } from '@gantry/proto';
import { sameStatus, type ConditionUpdate } from '../conditions.js';
import { followFinalizer, type KubeApi } from '../kube.js';
import type { Peers } from '../peers.js';
import { FEATURE_FLAGS, FINALIZER, FLAG_TARGETS, type FeatureFlagResource, type FeatureFlagStatus, type FlagServiceStatus, type FlagTarget } from '../resources.js';
import type { StatusWriter } from '../status.js';
import { describeError, grpcCode } from './grpc-errors.js';
import { TerminalError, type EventRecorder, type ObjectReconciler } from '../runtime/index.js';

export interface FeatureFlagReconcilerDeps {
  kube: KubeApi;
  peers: Peers;
  events: EventRecorder;
  status: StatusWriter;
  log: Logger;
}

/** One service's outcome: its status entry, why, and whether backing off and retrying can help. */
interface Outcome {
  status: FlagServiceStatus;
  reason: 'Synced' | 'KeyConflict' | 'Rejected' | 'NoAddress' | 'Unavailable';
  retry: boolean;
}

const synced = (name: FlagTarget, version?: bigint): Outcome => ({ status: { name, synced: true, ...(version !== undefined ? { version: String(version) } : {}) }, reason: 'Synced', retry: false });
const failed = (name: FlagTarget, reason: Outcome['reason'], message: string, retry: boolean): Outcome => ({ status: { name, synced: false, message }, reason, retry });

export const flagKeyOf = (ff: FeatureFlagResource) => ff.spec.key ?? ff.metadata.name;
export const sourceOf = (ff: FeatureFlagResource) => `operator:${ff.metadata.namespace}/${ff.metadata.name}`;

/**
 * The flag as the services store it, or what is wrong with the spec: the checks the CRD schema
 * cannot express (variant types, defaultVariant among the variants, valid targeting), made with
 * exactly the validation PutFlag runs, so an invalid spec is reported without a round trip.
 */
export function flagOf(ff: FeatureFlagResource): flagsv1.Flag | { problem: string } {
  try {
    const flag = flagFromSpec(ff.spec, { name: ff.metadata.name, source: sourceOf(ff) });
    validateFlag(flag);
    return flag;
  } catch (err) {
    return { problem: err instanceof GantryError ? err.message : (err as Error).message };
  }
}

function sameFlag(a: flagsv1.Flag, b: flagsv1.Flag): boolean {
  const view = (f: flagsv1.Flag) => ({ state: f.state, variants: f.variants, defaultVariant: f.defaultVariant, targeting: f.targeting ?? null, source: f.source });
  return sameStatus(view(a), view(b));
}

export class FeatureFlagReconciler implements ObjectReconciler<FeatureFlagResource> {
  constructor(private readonly deps: FeatureFlagReconcilerDeps) {}

  async reconcile(ff: FeatureFlagResource, signal: AbortSignal): Promise<void> {
    if (!(await followFinalizer(this.deps.kube, FEATURE_FLAGS, ff, FINALIZER, (f) => this.finalize(f, signal)))) return;
    const flag = flagOf(ff);
    if ('problem' in flag) {
      await this.writeStatus(ff, ff.status?.services ?? [], { type: 'Synced', status: 'False', reason: 'InvalidSpec', message: `${flag.problem}; fix the FeatureFlag` });
      this.deps.events.event(ff, 'Warning', 'InvalidSpec', flag.problem);
      throw new TerminalError(`invalid FeatureFlag spec: ${flag.problem}`); // nothing to retry until the spec changes
    }
    const targets = [...new Set(ff.spec.targets)];
    const outcomes = await this.converge(ff, targets, flag, signal);
    signal.throwIfAborted(); // the operator is stopping and cancelled the calls: nothing to report

    const problems = outcomes.filter((o) => !o.status.synced);
    const summary = problems.map((o) => `${o.status.name}: ${o.status.message}`).join('; ');
    const reason = problems.length === 0 ? 'Synced' : problems.every((o) => o.reason === problems[0]!.reason) ? problems[0]!.reason : 'SyncFailed';
    await this.writeStatus(
      ff,
      outcomes.map((o) => o.status),
      problems.length === 0
        ? { type: 'Synced', status: 'True', reason, message: `every target service holds the flag (${targets.join(', ')})` }
        : { type: 'Synced', status: 'False', reason, message: summary },
    );
    if (problems.length === 0) return;
    this.deps.events.event(ff, 'Warning', reason, summary);
    const failure = `flag ${flag.key} is not synced: ${summary}`;
    throw problems.some((o) => o.retry) ? new Error(failure) : new TerminalError(failure);
  }

  /** Puts the flag into every target and takes it out of services dropped from spec.targets. */
  private async converge(ff: FeatureFlagResource, targets: FlagTarget[], flag: flagsv1.Flag, signal: AbortSignal): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    for (const target of targets) outcomes.push(await this.push(ff, target, flag, signal));
    // Services dropped from spec.targets lose the flag; they stay in status until they have.
    for (const old of ff.status?.services ?? []) {
      const name = old.name as FlagTarget;
      if (targets.includes(name) || !FLAG_TARGETS.includes(name)) continue;
      // In the monolith every target is one process with one flag store: still a target there.
      const sharedStore = targets.some((t) => this.deps.peers.flags(t)?.address !== undefined && this.deps.peers.flags(t)?.address === this.deps.peers.flags(name)?.address);
      if (sharedStore) continue;
      const removed = await this.remove(ff, name, signal);
      if (!removed.status.synced) outcomes.push(removed);
    }
    return outcomes;
  }

  /** Puts the flag into one service unless it already holds it. */
  private async push(ff: FeatureFlagResource, target: FlagTarget, flag: flagsv1.Flag, signal: AbortSignal): Promise<Outcome> {
    const peer = this.deps.peers.flags(target);
    if (!peer) return failed(target, 'NoAddress', `no address for ${target}; set GANTRY_PEERS_${target.toUpperCase()}_ADDRESS`, false);
    try {
      const current = await this.read(target, flag.key, signal);
      if (current && current.source !== flag.source && current.source.startsWith('operator:')) {
        return failed(target, 'KeyConflict', `flag ${flag.key} belongs to ${current.source.slice('operator:'.length)}; give this FeatureFlag another spec.key`, false);
      }
      if (current && sameFlag(current, flag)) return synced(target, current.version);
      // expected_version makes a concurrent writer's change fail (ABORTED) rather than vanish.
      const put = await peer.call((c) => c.putFlag, { flag, expectedVersion: current ? current.version : 0n }, signal);
      this.deps.events.event(ff, 'Normal', 'Synced', `${target} now has flag ${flag.key} at version ${put.flag!.version}`);
      return synced(target, put.flag!.version);
    } catch (err) {
      if (grpcCode(err) === GrpcStatus.INVALID_ARGUMENT) return failed(target, 'Rejected', `${target} refused the flag: ${describeError(err)}; fix the FeatureFlag`, false);
      return failed(target, 'Unavailable', `${target} could not be updated (${describeError(err)}); retrying with backoff`, true);
    }
  }

  private async read(target: FlagTarget, key: string, signal: AbortSignal): Promise<flagsv1.Flag | undefined> {
    try {
      return (await this.deps.peers.flags(target)!.call((c) => c.getFlag, { key }, signal)).flag;
    } catch (err) {
      if (grpcCode(err) === GrpcStatus.NOT_FOUND) return undefined;
      throw err;
    }
  }

  /** Deletes the flag from one service if this FeatureFlag wrote it; `synced` = done. */
  private async remove(ff: FeatureFlagResource, target: FlagTarget, signal: AbortSignal): Promise<Outcome> {
    const peer = this.deps.peers.flags(target);
    if (!peer) return failed(target, 'NoAddress', `no address for ${target} to remove the flag from; set GANTRY_PEERS_${target.toUpperCase()}_ADDRESS`, true);
    try {
      const current = await this.read(target, flagKeyOf(ff), signal);
      if (current && current.source === sourceOf(ff)) await peer.call((c) => c.deleteFlag, { key: current.key, expectedVersion: current.version }, signal);
      return synced(target);
    } catch (err) {
      return failed(target, 'Unavailable', `the flag could not be removed from ${target} (${describeError(err)}); retrying with backoff`, true);
    }
  }

  private async finalize(ff: FeatureFlagResource, signal: AbortSignal): Promise<void> {
    const targets = new Set<FlagTarget>([...ff.spec.targets, ...(ff.status?.services ?? []).map((s) => s.name as FlagTarget)].filter((t) => FLAG_TARGETS.includes(t)));
    const problems: Outcome[] = [];
    for (const target of targets) {
      const result = await this.remove(ff, target, signal);
      if (!result.status.synced) problems.push(result);
    }
    signal.throwIfAborted();
    if (problems.length > 0) {
      const message = `deletion waits: ${problems.map((o) => o.status.message).join('; ')}`;
      await this.writeStatus(ff, ff.status?.services ?? [], { type: 'Synced', status: 'False', reason: 'SyncFailed', message });
      throw new Error(message);
    }
    this.deps.events.event(ff, 'Normal', 'Removed', `removed flag ${flagKeyOf(ff)} from ${[...targets].join(', ')}`);
  }

  /** Status with these services (sorted, so their order never causes a write) and Ready the same as Synced. */
  private writeStatus(ff: FeatureFlagResource, services: FlagServiceStatus[], condition: ConditionUpdate): Promise<void> {
    const sorted = [...services].sort((a, b) => (a.name < b.name ? -1 : 1));
    return this.deps.status.write<FeatureFlagStatus>(FEATURE_FLAGS, ff, { services: sorted }, [condition, { ...condition, type: 'Ready' }]);
  }
}
