// The gantry image under test, and what its containers need: the image built by the project's own
// scripts, a PostgreSQL image built FROM the same local base, and TLS/JWT material on the host that
// every container mounts read-only. Nothing is pulled: no registry answers on these machines.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GenericContainer } from 'testcontainers';
import { createCa, ensureDevSigningKey, issueLeaf, type ClientTls } from '@gantry/kit';

const root = fileURLToPath(new URL('../..', import.meta.url));
/** Building the base image cold (debootstrap) takes about 70 s, the gantry image about 15 s more. */
export const BUILD_TIMEOUT_MS = 300_000;

// The reaper image cannot be pulled; every test stops its own containers.
process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';

/** Whether a Docker engine answers; why not otherwise. */
export function dockerSkip(): string | false {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 10_000 });
    return false;
  } catch {
    if (process.env.CI === 'true') return false; // the suite fails instead: see requireDocker
    return 'no Docker engine answers; to include the container tests run: bash scripts/test-env/docker.sh start';
  }
}

/** Throws (so a test fails) when CI has no Docker engine: container tests must run in CI. */
export function requireDocker(): void {
  execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 10_000 });
}

const script = (path: string, env: NodeJS.ProcessEnv = {}) =>
  execFileSync('bash', [join(root, path)], { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: BUILD_TIMEOUT_MS }).trim().split('\n').pop()!;

/** Builds the gantry image with scripts/image/build.sh (the base image is cached by tag). */
export function buildGantryImage(): string {
  return script('scripts/image/build.sh', { GANTRY_IMAGE: process.env.GANTRY_IMAGE ?? 'gantry:test' });
}

/** The PostgreSQL test image, tagged by a hash of its directory (Dockerfile, entrypoint) so an edit rebuilds it. */
export function buildPostgresImage(base = 'gantry-base:node22'): string {
  const dir = join(root, 'tests/containers/postgres');
  const hash = createHash('sha256');
  for (const file of readdirSync(dir).sort()) hash.update(file).update(readFileSync(join(dir, file)));
  const tag = `gantry-test-postgres:15-${hash.update(base).digest('hex').slice(0, 12)}`;
  try {
    execFileSync('docker', ['image', 'inspect', tag], { stdio: 'ignore' });
  } catch {
    process.stderr.write(`building ${tag} (apt-get install postgresql-15 in a container, about 30 s)\n`);
    execFileSync('docker', ['build', '-q', '--build-arg', `BASE_IMAGE=${base}`, '-t', tag, dir], { stdio: ['ignore', 'ignore', 'inherit'], timeout: BUILD_TIMEOUT_MS });
  }
  return tag;
}

/** DNS names the targets have on the test network, as the chart's Services name them. */
export const ALIASES = { log: 'gantry-log', settlement: 'gantry-settlement', approvals: 'gantry-approvals', webhooks: 'gantry-webhooks' } as const;
/** The uid the image runs as (Dockerfile USER). */
export const IMAGE_UID = 10001;

export interface Material {
  /** Host directory: pki/, jwt/ (tokenFor reads jwt/signing-key.pem). */
  dir: string;
  /** The host's client TLS for mapped ports (server name localhost). */
  tls: ClientTls;
}

/**
 * A CA, one server certificate whose SANs cover every alias and localhost (also the services'
 * client certificate: their relays call log and webhooks as its workload, `all`), a client
 * certificate for the tests, and an ES256 JWT key whose JWKS the services trust.
 */
export async function makeMaterial(): Promise<Material> {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-containers-'));
  const ca = await createCa('Gantry container-test CA');
  const server = await issueLeaf(ca, { name: 'gantry-server', workload: 'all', dnsNames: [...Object.values(ALIASES), 'localhost'], ipAddresses: ['127.0.0.1'], usage: 'both' });
  const client = await issueLeaf(ca, { name: 'container-test-client', usage: 'client' });
  execFileSync('mkdir', ['-p', join(dir, 'pki')]);
  writeFileSync(join(dir, 'pki/ca.crt'), ca.certPem);
  writeFileSync(join(dir, 'pki/server.crt'), server.certPem);
  writeFileSync(join(dir, 'pki/server.key'), server.keyPem);
  writeFileSync(join(dir, 'pki/client.crt'), client.certPem);
  writeFileSync(join(dir, 'pki/client.key'), client.keyPem);
  await ensureDevSigningKey(join(dir, 'jwt'));
  // Test material only: the containers' uid must read it through the read-only bind mount.
  for (const sub of ['', 'pki', 'jwt']) {
    chmodSync(join(dir, sub), 0o755);
    for (const f of readdirSync(join(dir, sub), { withFileTypes: true })) if (f.isFile()) chmodSync(join(dir, sub, f.name), 0o644);
  }
  return { dir, tls: { caFile: join(dir, 'pki/ca.crt'), certFile: join(dir, 'pki/client.crt'), keyFile: join(dir, 'pki/client.key'), serverName: 'localhost' } };
}

/** Where the material is mounted in every container. */
export const SECRETS = '/etc/gantry';

/** Environment that points a container at the mounted material, mTLS and JWKS both. */
export const secretsEnv = (): Record<string, string> => ({
  GANTRY_TLS_CA_FILE: `${SECRETS}/pki/ca.crt`,
  GANTRY_TLS_CERT_FILE: `${SECRETS}/pki/server.crt`,
  GANTRY_TLS_KEY_FILE: `${SECRETS}/pki/server.key`,
  GANTRY_AUTH_JWKS_FILE: `${SECRETS}/jwt/jwks.json`,
});

/** A container hardened as the chart runs it: read-only root filesystem, non-root, no capabilities. */
export class HardenedContainer extends GenericContainer {
  constructor(image: string, material: Material) {
    super(image);
    this.hostConfig.ReadonlyRootfs = true;
    this.withUser(`${IMAGE_UID}:${IMAGE_UID}`)
      .withDroppedCapabilities('ALL')
      .withSecurityOpt('no-new-privileges')
      .withTmpFs({ '/tmp': 'rw,size=64m', '/var/lib/gantry': `rw,size=256m,uid=${IMAGE_UID},gid=${IMAGE_UID},mode=0700` })
      .withBindMounts([{ source: material.dir, target: SECRETS, mode: 'ro' }]);
  }
}

/** Exit code of a stopped (not removed) container. */
export function exitCode(id: string): number {
  return Number(execFileSync('docker', ['inspect', '-f', '{{.State.ExitCode}}', id], { encoding: 'utf8' }).trim());
}

/** Removes a container and its anonymous volumes, ignoring one already gone. */
export function removeContainer(id: string): void {
  try {
    execFileSync('docker', ['rm', '-f', '-v', id], { stdio: 'ignore' });
  } catch {}
}
