// A process's log level, changed for a while through AdminService.SetLogLevel. Pino's child
// loggers without a level of their own follow the root's, so setting the root's changes every
// component's. The configured level comes back on its own when the time is up: a debug level left
// on by mistake would otherwise flood the logs (and their storage) for good.
import type { Logger } from '../logger.js';
import type { Clock } from '../time/clock.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export class LogLevels {
  /** The level the process was configured with, restored when a temporary one ends. */
  private readonly configured: string;
  private cancel: (() => void) | undefined;
  private until: number | undefined;

  constructor(
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {
    this.configured = log.level;
  }

  get current(): string {
    return this.log.level;
  }

  /** When the level in force ends (undefined: it is the configured one). */
  get untilMs(): number | undefined {
    return this.until;
  }

  /** Sets `level` for `ms`, replacing an earlier temporary level; returns when the configured one returns. */
  set(level: LogLevel, ms: number): number {
    this.cancel?.();
    this.log.level = level;
    this.until = this.clock.now() + ms;
    this.cancel = this.clock.setTimeout(() => this.restore(), ms);
    return this.until;
  }

  /** Back to the configured level, timer cleared. */
  stop(): void {
    this.cancel?.();
    this.restore();
  }

  private restore(): void {
    this.cancel = undefined;
    this.until = undefined;
    if (this.log.level !== this.configured) {
      this.log.level = this.configured;
      this.log.info({ to_level: this.configured }, 'log level restored to the configured one');
    }
  }
}
