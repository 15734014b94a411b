import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

// Lists and watches of an arbitrary kind go straight over HTTPS with the kubeconfig's credentials
// (KubeConfig.applyToHTTPSOptions). client-node 2.x has typed lists only per kind (CustomObjectsApi
// cannot address the core group), and its Watch class aborts any stream that is quiet for 30 s,
// which a healthy watch without changes is: bookmarks arrive about once a minute.

/** A list page or an error body larger than this is refused (etcd caps one object at 1.5 MiB). */
export const MAX_RESPONSE_BYTES = 256 * 1024 * 1024;
/** One watch event larger than this ends the stream as broken. */
export const MAX_WATCH_EVENT_BYTES = 16 * 1024 * 1024;
/** A list page that takes longer than this fails (and is retried with backoff). */
export const REQUEST_TIMEOUT_MS = 60_000;
/** A watch that sends nothing for this long past its own timeoutSeconds is treated as dead. */
export const WATCH_IDLE_GRACE_MS = 30_000;

/** An error status from the API server, carrying its HTTP code and Status reason. */
export class KubeApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

/** True for 410 Gone / reason Expired: the resourceVersion asked for is older than the server keeps. */
export function isGone(err: unknown): boolean {
  return err instanceof KubeApiError && (err.statusCode === 410 || err.reason === 'Expired' || err.reason === 'Gone');
}

/** A Status object (from an error body or an ERROR watch event) as an error. */
export function statusError(status: unknown, fallbackCode: number): KubeApiError {
  const s = (status ?? {}) as { code?: unknown; reason?: unknown; message?: unknown };
  const code = typeof s.code === 'number' ? s.code : fallbackCode;
  const reason = typeof s.reason === 'string' ? s.reason : '';
  const message = typeof s.message === 'string' ? s.message : `the API server answered ${code}`;
  return new KubeApiError(code, reason, message);
}

type Query = Record<string, string | number | boolean | undefined>;

async function open(kc: KubeConfig, path: string, query: Query, signal: AbortSignal): Promise<http.ClientRequest> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster; set current-context');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
  const opts: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' }, signal };
  await kc.applyToHTTPSOptions(opts);
  return url.protocol === 'http:' ? http.request(url, opts) : https.request(url, opts);
}

function readBody(res: http.IncomingMessage, limitBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limitBytes) res.destroy(new Error(`response larger than ${limitBytes} bytes`));
      else chunks.push(c);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

async function failure(res: http.IncomingMessage): Promise<KubeApiError> {
  const text = await readBody(res, 1024 * 1024).catch(() => '');
  let status: unknown;
  try {
    status = JSON.parse(text);
  } catch {
    status = { message: `the API server answered ${res.statusCode}: ${text.slice(0, 200)}` };
  }
  return statusError(status, res.statusCode ?? 0);
}

/** GET path as JSON; a non-2xx answer rejects with KubeApiError. */
export async function getJson<T>(kc: KubeConfig, path: string, query: Query, signal: AbortSignal): Promise<T> {
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  const req = await open(kc, path, query, AbortSignal.any([signal, timeout]));
  return new Promise<T>((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      const code = res.statusCode ?? 0;
      if (code < 200 || code >= 300) return void failure(res).then(reject, reject);
      readBody(res, MAX_RESPONSE_BYTES).then((text) => resolve(JSON.parse(text) as T), reject);
    });
    req.end();
  });
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: unknown;
}

/**
 * Streams a watch, calling onEvent for each event. Resolves when the server ends the stream (its
 * timeoutSeconds passed); rejects when the connection breaks, the server refuses (KubeApiError), or
 * onEvent throws (the stream is closed first).
 */
export async function watch(kc: KubeConfig, path: string, query: Query & { timeoutSeconds: number }, signal: AbortSignal, onEvent: (e: WatchEvent) => void): Promise<void> {
  const req = await open(kc, path, { ...query, watch: true }, signal);
  req.setTimeout(query.timeoutSeconds * 1000 + WATCH_IDLE_GRACE_MS, () => req.destroy(new Error('the watch went silent')));
  req.on('socket', (s) => s.setKeepAlive(true, 30_000));
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    req.on('error', fail);
    req.on('response', (res) => {
      if (res.statusCode !== 200) return void failure(res).then(fail, fail);
      res.setEncoding('utf8');
      let pending = '';
      res.on('data', (chunk: string) => {
        pending += chunk;
        let nl: number;
        while (!settled && (nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (!line.trim()) continue;
          try {
            onEvent(JSON.parse(line) as WatchEvent);
          } catch (err) {
            return fail(err);
          }
        }
        if (pending.length > MAX_WATCH_EVENT_BYTES) fail(new Error(`a watch event larger than ${MAX_WATCH_EVENT_BYTES} bytes`));
      });
      res.on('error', fail);
      res.on('end', () => {
        if (settled) return;
        settled = true;
        resolve();
      });
      res.on('close', () => fail(new Error('the watch connection closed before the stream ended')));
    });
    req.end();
  });
}
