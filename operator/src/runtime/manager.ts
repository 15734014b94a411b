import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock, Logger } from '@gantry/kit';
import type { Controller } from './controller.js';
import { LeaderElector } from './leader.js';

export interface ManagerOptions {
  kc: KubeConfig;
  /** Namespace of the leader Lease. */
  namespace: string;
  leaseName: string;
  /** This process among the candidates, e.g. the pod name. */
  identity: string;
  log: Logger;
  /** Off: this process reconciles without a Lease (one replica, or tests). Default on. */
  leaderElection?: boolean;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  clock?: Clock;
}

/** Leadership was lost without being asked to stop; the process should exit and start afresh. */
export class LeadershipLostError extends Error {
  constructor(identity: string) {
    super(`${identity} lost the leader Lease (could not renew it in time); restart to campaign again`);
    this.name = 'LeadershipLostError';
  }
}

/**
 * Runs controllers under leader election. Informers start at once so a standby's cache is warm;
 * only the leader runs controllers. Like controller-runtime, losing leadership is fatal: the
 * controllers stop and start() rejects with LeadershipLostError, since a fresh process is the only
 * sure way to drop every piece of leader-only state.
 */
export class Manager {
  private readonly controllers: Controller[] = [];
  private readonly elector: LeaderElector | undefined;
  private leadingWithoutElection = false;

  constructor(private readonly opts: ManagerOptions) {
    if (opts.leaderElection !== false) {
      this.elector = new LeaderElector({
        kc: opts.kc,
        namespace: opts.namespace,
        name: opts.leaseName,
        identity: opts.identity,
        leaseDurationMs: opts.leaseDurationMs,
        renewDeadlineMs: opts.renewDeadlineMs,
        retryPeriodMs: opts.retryPeriodMs,
        log: opts.log,
        clock: opts.clock,
      });
    }
  }

  get isLeader(): boolean {
    return this.elector ? this.elector.isLeader : this.leadingWithoutElection;
  }

  add(controller: Controller): void {
    this.controllers.push(controller);
  }

  /** Runs until signal aborts (controllers drain, the Lease is released, informers stop), then resolves. */
  async start(signal: AbortSignal): Promise<void> {
    const informers = [...new Set(this.controllers.flatMap((c) => c.informers))];
    for (const inf of informers) inf.start();
    const runControllers = async (leading: AbortSignal) => {
      const results = await Promise.allSettled(this.controllers.map((c) => c.start(leading)));
      for (const r of results) if (r.status === 'rejected') this.opts.log.error({ err: r.reason }, 'a controller failed');
    };
    try {
      if (!this.elector) {
        this.leadingWithoutElection = true;
        await runControllers(signal);
        this.leadingWithoutElection = false;
        return;
      }
      await this.elector.run({ onStartedLeading: runControllers }, signal);
      if (!signal.aborted) throw new LeadershipLostError(this.opts.identity);
    } finally {
      await Promise.all(informers.map((i) => i.stop()));
    }
  }
}
