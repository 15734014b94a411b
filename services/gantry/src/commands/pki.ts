import { resolve } from 'node:path';
import { ensureDevPki } from '@gantry/kit';

/** `gantry pki init`: writes a dev CA, a server certificate for localhost and a client certificate. */
export async function pkiInit(opts: { dir: string; force?: boolean }): Promise<void> {
  const { paths, created } = await ensureDevPki(resolve(opts.dir), { force: opts.force ?? false });
  const verb = created ? 'Created' : 'Kept the existing';
  process.stdout.write(
    `${verb} dev PKI in ${paths.dir}:\n  CA          ${paths.caFile}\n  server      ${paths.serverCertFile} (+ .key)  SAN localhost, 127.0.0.1, ::1, *.gantry.svc\n  client      ${paths.clientCertFile} (+ .key)  identity spiffe://gantry.local/dev-client\n` +
      (created ? '' : 'Use --force to replace it (running servers pick up new files within tls.reloadIntervalMs).\n'),
  );
}
