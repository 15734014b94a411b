// A benchmark server, run as its own process: `bare` is a plain grpc-js server, `stack` is the
// kit's full stack (mTLS, JWT, admission, rate limit, tracing of every call into a counting
// exporter); `stack-sampled` records 10% of new traces, `stack-untraced` has no collector (the
// default install: spans are never recorded). All answer Echo with the same handler.
// Prints one JSON line {port, dataDir, token} when ready; exits on SIGTERM.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { ensureDevPki, silentLogger, loadConfig, startRuntime, type ServiceModule, type CallContext } from '../src/index.js';
import { echoDefinition, echoServiceDefinition } from '@gantry/test-support/echo';
import { tokenFor } from '@gantry/test-support/harness';
import { benchSpanProcessor } from './tracing.js';

interface EchoRequest { message: string }
/** The one handler both servers run. */
const echo = (req: EchoRequest, principal: string) => ({ message: req.message, principal, peerIdentity: '' });

const mode = process.argv[2];
if (mode === 'bare' || mode === 'bare-tls') {
  const server = new Server();
  server.addService(echoDefinition, {
    Echo: (call: ServerUnaryCall<EchoRequest, unknown>, cb: sendUnaryData<unknown>) => cb(null, echo(call.request, '')),
  });
  // bare-tls: the same bare server behind mTLS only, to show what TLS alone costs.
  let dataDir: string | undefined;
  let credentials = ServerCredentials.createInsecure();
  if (mode === 'bare-tls') {
    dataDir = mkdtempSync(join(tmpdir(), 'gantry-bench-'));
    const { paths } = await ensureDevPki(join(dataDir, 'pki'));
    credentials = ServerCredentials.createSsl(readFileSync(paths.caFile), [{ cert_chain: readFileSync(paths.serverCertFile), private_key: readFileSync(paths.serverKeyFile) }], true);
  }
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (e, p) => (e ? reject(e) : resolve(p))));
  process.stdout.write(JSON.stringify({ port, dataDir }) + '\n');
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
} else if (mode === 'stack' || mode === 'stack-sampled' || mode === 'stack-untraced') {
  const dataDir = mkdtempSync(join(tmpdir(), 'gantry-bench-'));
  const config = loadConfig({
    env: { GANTRY_AUTH_DEV_ISSUER: 'true' }, // the benchmark's clients mint dev tokens
    overrides: {
      dataDir,
      listen: { host: '127.0.0.1', port: 0, healthPort: 0 },
      telemetry: { logLevel: 'silent', traceSampleRatio: mode === 'stack-sampled' ? 0.1 : 1 },
      rateLimit: { points: 1_000_000, windowSec: 1 },
    },
  });
  const module: ServiceModule = {
    name: 'gantry.test.v1.EchoService',
    // ts-proto's definition: the kit decodes requests strictly, which proto-loader's cannot do.
    definition: echoServiceDefinition as unknown as ServiceModule['definition'],
    scopes: { echo: ['echo.read'], count: ['echo.write'], collect: ['echo.write'], chat: ['echo.write'] },
    handlers: { echo: async (req: EchoRequest, ctx: CallContext) => echo(req, ctx.principal?.subject ?? '') } as unknown as ServiceModule['handlers'],
  };
  const runtime = await startRuntime({
    config,
    modules: [{ name: 'echo', create: () => [module] }],
    log: silentLogger(),
    spanProcessors: mode === 'stack-untraced' ? [] : [benchSpanProcessor()],
  });
  const token = tokenFor(dataDir, 'bench', ['echo.read']);
  process.stdout.write(JSON.stringify({ port: runtime.port, dataDir, token }) + '\n');
  process.on('SIGTERM', () => void runtime.stop(1000).then(() => process.exit(0)));
} else {
  process.stderr.write('usage: echo-server.ts bare|bare-tls|stack|stack-sampled|stack-untraced\n');
  process.exit(2);
}
