import type { WorkloadGrant } from '../auth/workload.js';
import type { GantryModule } from './module.js';

/** What a workload running `modules` is granted: the scopes their calls need, the event families they own. */
export function grantOf(modules: readonly GantryModule[]): WorkloadGrant {
  return {
    scopes: [...new Set(modules.flatMap((m) => m.calls ?? []))].sort(),
    families: modules.filter((m) => m.events).map((m) => m.name),
  };
}

/**
 * The modules one program can run (Mimir's module manager): each registered once by name, and a
 * target resolved to the modules it needs, dependencies first.
 */
export class ModuleRegistry {
  private readonly modules = new Map<string, GantryModule>();

  /** Registers a module; a second one of the same name is a programming error. */
  register(...modules: GantryModule[]): this {
    for (const m of modules) {
      if (this.modules.has(m.name)) throw new Error(`invariant: module ${m.name} is registered twice`);
      this.modules.set(m.name, m);
    }
    return this;
  }

  /** Every registered module, in registration order. */
  all(): GantryModule[] {
    return [...this.modules.values()];
  }

  /** The names a `--target` may take. */
  names(): string[] {
    return [...this.modules.keys()];
  }

  /**
   * The modules `targets` need, each once, every dependency before its dependents (depth-first, in
   * declaration order, so the order is stable). Unknown names and cycles are errors.
   */
  resolve(targets: readonly string[]): GantryModule[] {
    const order: GantryModule[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (name: string, path: readonly string[]): void => {
      const m = this.modules.get(name);
      if (!m) {
        const from = path.length > 0 ? ` (needed by ${path.at(-1)})` : '';
        throw new Error(`unknown target "${name}"${from}; choose one of: ${this.names().join(', ')}`);
      }
      if (state.get(name) === 'done') return;
      if (state.get(name) === 'visiting') throw new Error(`invariant: modules depend on each other in a cycle: ${[...path, name].join(' → ')}`);
      state.set(name, 'visiting');
      for (const dep of m.dependencies ?? []) visit(dep, [...path, name]);
      state.set(name, 'done');
      order.push(m);
    };
    for (const t of targets) visit(t, []);
    return order;
  }

  /**
   * The grant of each target's workload identity: the scopes the calls of its modules need, and the
   * event families it owns (the modules it runs that emit events). Targets that call nobody and
   * emit nothing get none: their certificates authenticate them as nobody.
   */
  workloadGrants(targets: readonly string[] = this.names()): Map<string, WorkloadGrant> {
    const grants = new Map<string, WorkloadGrant>();
    for (const target of targets) {
      const grant = grantOf(this.resolve([target]));
      if (grant.scopes.length > 0 || grant.families.length > 0) grants.set(target, grant);
    }
    return grants;
  }

  /** Every scope any module declares, sorted. */
  scopes(): string[] {
    return [...new Set(this.all().flatMap((m) => m.scopes ?? []))].sort();
  }
}
