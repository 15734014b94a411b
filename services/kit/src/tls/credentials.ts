import { experimental, type ChannelCredentials, type ServerCredentials } from '@grpc/grpc-js';

export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Files are re-read at this interval; a rotated certificate applies to new connections. */
  reloadIntervalMs: number;
}

/** How long the first read of the certificate files may take before start-up fails. */
const FIRST_LOAD_TIMEOUT_MS = 10_000;

/**
 * A provider that re-reads the files at an interval, resolved once it has loaded them the first
 * time: grpc-js would otherwise refuse handshakes until the first (asynchronous) read completes.
 */
async function loadedProvider(files: TlsFiles): Promise<experimental.FileWatcherCertificateProvider> {
  const provider = new experimental.FileWatcherCertificateProvider({
    caCertificateFile: files.caFile,
    certificateFile: files.certFile,
    privateKeyFile: files.keyFile,
    refreshIntervalMs: files.reloadIntervalMs,
  });
  const first = <T>(add: (l: (u: T | null) => void) => void, remove: (l: (u: T | null) => void) => void, what: string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`could not load the TLS ${what} within ${FIRST_LOAD_TIMEOUT_MS} ms; check ${files.caFile}, ${files.certFile}, ${files.keyFile}`)), FIRST_LOAD_TIMEOUT_MS);
      const listener = (update: T | null) => {
        if (!update) return;
        clearTimeout(timer);
        // Removed on the next tick: grpc-js iterates its listener set while calling us.
        setImmediate(() => remove(listener));
        resolve();
      };
      add(listener);
    });
  await Promise.all([
    first((l) => provider.addCaCertificateListener(l), (l) => provider.removeCaCertificateListener(l), 'CA certificate'),
    first((l) => provider.addIdentityCertificateListener(l), (l) => provider.removeIdentityCertificateListener(l), 'certificate and key'),
  ]);
  return provider;
}

/**
 * Server credentials that require a client certificate signed by the platform CA, re-reading the
 * CA, certificate and key files as they rotate (cert-manager renews them in place).
 */
export async function mtlsServerCredentials(files: TlsFiles): Promise<ServerCredentials> {
  const provider = await loadedProvider(files);
  return experimental.createCertificateProviderServerCredentials(provider, provider, true);
}

/**
 * Channel credentials for calls between services: this workload's own certificate (its identity)
 * and the platform CA, re-read as they rotate, like the server's.
 */
export async function mtlsChannelCredentials(files: TlsFiles): Promise<ChannelCredentials> {
  const provider = await loadedProvider(files);
  return experimental.createCertificateProviderChannelCredentials(provider, provider);
}
