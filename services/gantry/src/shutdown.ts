import type { Logger } from '@gantry/kit';

/**
 * On SIGTERM or SIGINT: logs `message` and runs `stop`, then exits 0 (1 if it failed). A second
 * signal exits at once with 1, for someone who does not want to wait.
 */
export function exitOnSignals(log: Logger, message: string, fields: Record<string, unknown>, stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, ...fields }, message);
    stop().then(
      () => {
        log.info('stopped cleanly');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}
