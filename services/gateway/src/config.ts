import { z } from 'zod';
import { splitList, type ConfigSlice } from '@gantry/kit';

/** An origin as browsers send it: scheme, host and optional port, nothing else. */
const ORIGIN = /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/;

/** The gateway target's settings (docs/configuration.md): config key `gateway`, environment variables GANTRY_GATEWAY_*. */
export const gatewayConfigSchema = z.strictObject({
  /** HTTPS port (HTTP/1.1 and HTTP/2 over TLS, on listen.host). 0 = any free port. */
  port: z.coerce.number().int().min(0).max(65535).default(8443),
  /** Larger request bodies are refused with 413 before they are read in full. */
  maxRequestBytes: z.coerce.number().int().min(1024).max(16 * 1024 * 1024).default(1024 * 1024),
  /** The gRPC deadline of each unary and client-stream call. */
  requestTimeoutMs: z.coerce.number().int().min(100).max(300_000).default(30_000),
  /** A server stream (Server-Sent Events) ends after this long with DEADLINE_EXCEEDED; the client reconnects to go on. */
  streamMaxDurationMs: z.coerce.number().int().min(1000).max(24 * 3600 * 1000).default(30 * 60 * 1000),
  /** Server streams open at once in this process; more are answered 429. */
  maxConcurrentStreams: z.coerce.number().int().min(1).max(100_000).default(256),
  /** Messages in one client-stream request (a JSON array body). */
  maxStreamMessages: z.coerce.number().int().min(1).max(100_000).default(1000),
  /** A comment line is sent on an idle event stream this often, so proxies keep it open. */
  streamHeartbeatMs: z.coerce.number().int().min(1000).max(300_000).default(15_000),
  /** Deadline of each backend health check (GET /health, /readyz, /ping/<service>). */
  healthTimeoutMs: z.coerce.number().int().min(100).max(60_000).default(2_000),
  /** Origins whose browsers may call (CORS); empty: CORS is off and no CORS headers are sent. */
  corsAllowedOrigins: z.preprocess(splitList, z.array(z.string().regex(ORIGIN, 'must be origins such as https://app.example.com')).max(64)).default([]),
}).prefault({});

export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;

/** The gateway module's slice of the program's config. */
export const gatewayConfig = { key: 'gateway', schema: gatewayConfigSchema } satisfies ConfigSlice;
