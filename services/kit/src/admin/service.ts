// gantry.admin.v1.AdminService: served by every process beside its services, behind the `admin`
// scope. What a process is (version, commit, targets, engine, uptime, a digest of its
// configuration), its log level for a while, and draining it.
import { createHash } from 'node:crypto';
import { adminv1 } from '@gantry/proto';
import { buildInfo } from '../build-info.js';
import { invalidArgument } from '../errors.js';
import type { Logger } from '../logger.js';
import type { HealthState } from '../health/health.js';
import { defineService, type ServiceModule } from '../rpc/service.js';
import { realClock, type Clock } from '../time/clock.js';
import { durationFromMs, durationToMs } from '../time/duration.js';
import { channelzService } from './channelz.js';
import { LogLevels, LOG_LEVELS, type LogLevel } from './log-levels.js';

/** The scope every AdminService and channelz method requires. */
export const ADMIN_SCOPE = 'admin';

/** SetLogLevel's bounds: long enough to chase a problem, never a level left on for good. */
export const MIN_LOG_LEVEL_MS = 1_000;
export const MAX_LOG_LEVEL_MS = 24 * 3_600_000;

export interface AdminDeps {
  targets: readonly string[];
  engine: string;
  /** The effective configuration; only its digest leaves the process, with secret values masked first. */
  config: unknown;
  log: Logger;
  health: HealthState;
  clock?: Clock;
}

export interface Admin {
  services: ServiceModule[];
  /** Restores the configured log level and forgets its timer (process stop). */
  stop(): void;
}

/** AdminService and channelz for one process. */
export function adminServices(deps: AdminDeps): Admin {
  const clock = deps.clock ?? realClock;
  const startedAtMs = clock.now();
  const levels = new LogLevels(deps.log, clock);
  const configDigest = digestOf(deps.config);

  const admin = defineService<typeof adminv1.AdminServiceService>({
    name: 'gantry.admin.v1.AdminService',
    definition: adminv1.AdminServiceService,
    scopes: { getInfo: [ADMIN_SCOPE], setLogLevel: [ADMIN_SCOPE], drain: [ADMIN_SCOPE] },
    handlers: {
      async getInfo() {
        const info = buildInfo();
        const nowMs = clock.now();
        return {
          version: info.version,
          commit: info.commit,
          targets: [...deps.targets],
          engine: deps.engine,
          startedAt: new Date(startedAtMs),
          uptime: durationFromMs(nowMs - startedAtMs),
          configDigest,
          logLevel: levels.current,
          logLevelUntil: levels.untilMs === undefined ? undefined : new Date(levels.untilMs),
          draining: deps.health.isDraining,
          runtime: process.version,
        };
      },

      async setLogLevel(req, ctx) {
        const level = req.level.trim().toLowerCase();
        if (!(LOG_LEVELS as readonly string[]).includes(level)) throw invalidArgument('level', `must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(req.level.slice(0, 40))}`);
        const ms = req.duration ? durationToMs(req.duration) : 0;
        if (ms < MIN_LOG_LEVEL_MS || ms > MAX_LOG_LEVEL_MS) throw invalidArgument('duration', `must be between 1 s and 24 h (the configured level returns after it), not ${ms / 1000} s`);
        const previous = levels.current;
        const untilMs = levels.set(level as LogLevel, ms);
        deps.log.warn({ by: ctx.principal.subject, from_level: previous, to_level: level, until: new Date(untilMs).toISOString() }, 'log level changed through AdminService; the configured level returns at "until"');
        return { previousLevel: previous, level, until: new Date(untilMs) };
      },

      async drain(_req, ctx) {
        const newlyDraining = !deps.health.isDraining;
        deps.health.drain();
        if (newlyDraining) deps.log.warn({ by: ctx.principal.subject }, 'draining through AdminService: readiness NOT_SERVING until the process restarts; calls are still served');
        return { newlyDraining };
      },
    },
  });
  return { services: [admin, channelzService(ADMIN_SCOPE)], stop: () => levels.stop() };
}

/** Names whose values are secret wherever they appear in the configuration. */
const SECRET_KEY = /(secret|password|passphrase|token|privatekey|apikey)$/i;

/**
 * `sha256:<hex>` of the configuration as canonical JSON (keys sorted), with secret values masked:
 * a password in a database URL and any value under a secret-sounding key. A digest of a weak
 * secret could be guessed offline, so none goes in; paths to secret files are not secrets.
 */
export function digestOf(config: unknown): string {
  return `sha256:${createHash('sha256').update(JSON.stringify(masked(config))).digest('hex')}`;
}

function masked(value: unknown, key = ''): unknown {
  if (value === null || value === undefined) return value ?? null;
  if (typeof value === 'string') return SECRET_KEY.test(key) ? '[secret]' : maskUrlPassword(value);
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return value.map((v) => masked(v));
  if (typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, SECRET_KEY.test(k) && typeof (value as Record<string, unknown>)[k] !== 'object' ? '[secret]' : masked((value as Record<string, unknown>)[k], k)]),
    );
  }
  return value;
}

function maskUrlPassword(text: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/\s]*@/i.test(text)) return text;
  try {
    const url = new URL(text);
    if (url.password) url.password = 'secret';
    return url.toString();
  } catch {
    return text.replace(/\/\/[^/\s]*@/, '//[secret]@');
  }
}
