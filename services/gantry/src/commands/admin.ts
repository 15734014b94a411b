import { Command } from 'commander';
import { ADMIN_SCOPE, durationFromMs, parseDurationText, unary } from '@gantry/kit';
import { adminv1 } from '@gantry/proto';
import { printJson, withConnection, withServiceClient, type Connection, type ConnectionOptions } from '../connection.js';

const out = (line: string): void => {
  process.stdout.write(line + '\n');
};
const withAdmin = <T>(opts: ConnectionOptions, fn: (c: Connection, admin: adminv1.AdminServiceClient) => Promise<T>) =>
  withServiceClient(opts, [ADMIN_SCOPE], (c) => new adminv1.AdminServiceClient(c.address, c.credentials, c.options), fn);

const uptimeText = (d: { seconds: bigint } | undefined) => {
  const s = Number(d?.seconds ?? 0n);
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h ${Math.floor((s % 3600) / 60)}m ${s % 60}s`;
};

/** `gantry admin info|log-level|drain`: AdminService of one process (a token with the admin scope). */
export function adminCommand(): Command {
  const cmd = new Command('admin').description("one process's AdminService (needs the admin scope): what it runs, its log level for a while, draining it");

  withConnection(cmd.command('info').description('version, commit, targets, engine, uptime, log level and the configuration digest of the process at --address')).action((opts: ConnectionOptions) =>
    withAdmin(opts, async (c, admin) => {
      const info = await unary(admin.getInfo, admin, {}, c.metadata());
      if (c.json) return printJson({ ...info, startedAt: info.startedAt?.toISOString(), uptimeSeconds: info.uptime?.seconds, uptime: undefined, logLevelUntil: info.logLevelUntil?.toISOString() ?? null });
      out(`gantry ${info.version} (commit ${info.commit}) on ${info.runtime}`);
      out(`targets      ${info.targets.join(', ')} (${info.engine})`);
      out(`started      ${info.startedAt?.toISOString()} (up ${uptimeText(info.uptime)})`);
      out(`log level    ${info.logLevel}${info.logLevelUntil ? ` until ${info.logLevelUntil.toISOString()}` : ''}`);
      out(`draining     ${info.draining ? 'yes (readiness NOT_SERVING until restarted)' : 'no'}`);
      out(`config       ${info.configDigest}`);
    }),
  );

  withConnection(cmd.command('log-level').description('set the log level for a while; the configured level returns on its own').argument('<level>', 'trace, debug, info, warn, error, fatal or silent'))
    .requiredOption('--for <duration>', 'how long, e.g. 10m (1 s to 24 h)')
    .action((level: string, opts: ConnectionOptions & { for: string }) =>
      withAdmin(opts, async (c, admin) => {
        const res = await unary(admin.setLogLevel, admin, { level, duration: durationFromMs(parseDurationText('--for', opts.for)) }, c.metadata());
        if (c.json) return printJson({ previousLevel: res.previousLevel, level: res.level, until: res.until?.toISOString() });
        out(`log level ${res.level} until ${res.until?.toISOString()} (was ${res.previousLevel}; it returns on its own)`);
      }),
    );

  withConnection(cmd.command('drain').description('readiness NOT_SERVING for good, so no new calls are routed here; calls are still served until the process stops')).action((opts: ConnectionOptions) =>
    withAdmin(opts, async (c, admin) => {
      const res = await unary(admin.drain, admin, {}, c.metadata());
      if (c.json) return printJson(res);
      out(res.newlyDraining ? 'draining: readiness is NOT_SERVING until the process restarts' : 'already draining');
    }),
  );
  return cmd;
}
