import { Command, Option } from 'commander';
import { buildInfo, ConfigError } from '@gantry/kit';
import { adminCommand } from './commands/admin.js';
import { approvalsCommand } from './commands/approvals.js';
import { devKeyCommand } from './commands/dev-key.js';
import { keysCommand } from './commands/keys.js';
import { flagsCommand } from './commands/flags.js';
import { health } from './commands/health.js';
import { logCommand } from './commands/log.js';
import { pkiInit } from './commands/pki.js';
import { serve } from './commands/serve.js';
import { settlementCommand } from './commands/settlement.js';
import { token } from './commands/token.js';
import { TARGETS } from './registry.js';
import { withConnection } from './connection.js';

const collect = (value: string, previous: string[]) => [...previous, value];

const program = new Command('gantry')
  .description('Gantry: gRPC platform services (log, settlement, approvals, webhooks) in one program')
  // Not commander's .version(): that takes the text up front, and from sources it costs two git calls every command would pay.
  .option('-V, --version', 'print the version and the commit it was built from')
  .on('option:version', () => {
    process.stdout.write(`gantry ${buildInfo().version} (commit ${buildInfo().commit})\n`);
    process.exit(0);
  })
  .showHelpAfterError('(run with --help for usage)')
  .configureHelp({ showGlobalOptions: true });

program
  .command('serve')
  .description('run one target, or all of them in one process on the embedded database')
  .addOption(new Option('--target <target>', 'which service to run').choices([...TARGETS]).default('all'))
  .option('--config <file>', 'JSON config file (environment variables GANTRY_* override it)')
  .option('--dev-issuer', 'development: trust a JWT key created under the data dir, which `gantry token` signs with (auth.devIssuer); never in a cluster', false)
  .addHelpText('after', '\nEnvironment: GANTRY_<CONFIG_PATH>, e.g. GANTRY_LISTEN_PORT, GANTRY_DATA_DIR, GANTRY_DATABASE_URL, GANTRY_TLS_CA_FILE, GANTRY_AUTH_JWKS_FILE (docs/configuration.md)')
  .action(serve);

program
  .command('pki')
  .description('manage the local development PKI')
  .command('init')
  .description('create a dev CA, a localhost server certificate and a client certificate')
  .option('--dir <dir>', 'where to write them', '.gantry/pki')
  .option('--force', 'replace an existing PKI', false)
  .action(pkiInit);

program
  .command('token')
  .description('mint a development JWT that the local server accepts, and print it')
  .option('--subject <sub>', 'principal name (the rate-limit key)', 'dev')
  .option('--scope <scope>', 'a scope to grant; repeat for more', collect, [])
  .option('--all-scopes', 'grant every scope any RPC declares', false)
  .option('--ttl <seconds>', 'lifetime in seconds', '3600')
  .option('--config <file>', 'JSON config file (for dataDir, issuer, audience)')
  .action(token);

withConnection(program.command('health').description('check a server with grpc.health.v1 (exit 0 only when SERVING): for probes and helm test'))
  .option('--service <name>', "a service's full name, e.g. gantry.log.v1.LogService (default: the whole server)", '')
  .option('--plaintext', 'plaintext, for the health port (7080) rather than the mTLS port', false)
  .option('--timeout <ms>', 'deadline of the check', '3000')
  .option('--wait', 'keep trying to reach the server until the deadline instead of failing at once (a server starting, a NetworkPolicy not yet programmed)', false)
  .action(health);

program.addCommand(logCommand());
program.addCommand(settlementCommand());
program.addCommand(approvalsCommand());
program.addCommand(flagsCommand());
program.addCommand(devKeyCommand());
program.addCommand(keysCommand());
program.addCommand(adminCommand());

try {
  await program.parseAsync();
} catch (err) {
  const message = err instanceof ConfigError || err instanceof Error ? err.message : String(err);
  process.stderr.write(`gantry: ${message}\n`);
  process.exit(2);
}
