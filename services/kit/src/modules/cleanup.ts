import type { Logger } from '../logger.js';

/** One undo step: stops what a start-up step started. `graceMs` is the drain budget of a stop. */
export type Cleanup = (graceMs?: number) => Promise<void> | void;

/**
 * The undo steps of a process, pushed as each part starts and run last-first: on a failed
 * start-up (what started so far) and on stop (everything). A failing step is logged and the
 * rest still run, so one stuck part does not leave the others open.
 */
export class CleanupStack {
  private readonly steps: { name: string; undo: Cleanup }[] = [];

  constructor(private readonly log: Logger) {}

  /** Registers how to stop `name`; it runs before everything pushed earlier. */
  push(name: string, undo: Cleanup): void {
    this.steps.push({ name, undo });
  }

  /** Runs every step, last pushed first, and empties the stack. */
  async unwind(graceMs?: number): Promise<void> {
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      try {
        await step.undo(graceMs);
      } catch (err) {
        this.log.warn({ err, step: step.name }, `stopping ${step.name} failed; stopping the rest`);
      }
    }
  }
}
