import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError, configSchema, configSchemaFor, envNamesOf, loadConfig, peerAddressOf } from '../src/config.js';

interface JsonSchemaNode {
  properties?: Record<string, JsonSchemaNode>;
}

describe('loadConfig', () => {
  let dir: string;

  /** Writes `content` as a config file and returns its path. */
  function configFile(name: string, content: unknown): string {
    const path = join(dir, name);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gantry-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('with nothing set, every knob has its documented default', () => {
    const config = loadConfig({ env: {} });
    assert.deepEqual(config.listen, { host: '0.0.0.0', port: 7443, healthPort: 7080 });
    assert.equal(config.dataDir, '.gantry');
    assert.equal(config.tls.reloadIntervalMs, 60_000);
    assert.equal(config.tls.caFile, undefined);
    assert.equal(config.auth.issuer, 'gantry-dev');
    assert.equal(config.auth.audience, 'gantry');
    assert.equal(config.auth.clockToleranceSec, 30);
    assert.deepEqual(config.rateLimit, { store: 'memory', points: 1000, windowSec: 1, methods: {} });
    assert.equal(config.database.url, undefined);
    assert.equal(config.database.poolSize, 10);
    assert.equal(config.database.startupTimeoutMs, 300_000);
    assert.equal(config.limits.maxReceiveMessageBytes, 8 * 1024 * 1024);
    assert.equal(config.limits.maxRequestBytes, 64 * 1024, 'methods that declare no limit take small requests');
    assert.equal(config.limits.maxConcurrentStreams, 100);
    assert.equal(config.limits.maxCallsPerPrincipal, 128);
    assert.equal(config.limits.shutdownGraceMs, 15_000);
    assert.equal(config.limits.maxConnectionAgeMs, 300_000);
    assert.equal(config.limits.maxConnectionAgeGraceMs, 0, 'no grace limit: streams run on past the age');
    assert.equal(config.telemetry.logLevel, 'info');
  });

  test('an environment variable sets its config key, coerced to the key’s type', () => {
    const config = loadConfig({
      env: { GANTRY_LISTEN_PORT: '9443', GANTRY_LISTEN_HEALTH_PORT: '9080', GANTRY_RATE_LIMIT_STORE: 'postgres', GANTRY_DATABASE_URL: 'postgres://u:p@db:5432/gantry', GANTRY_TELEMETRY_LOG_LEVEL: 'debug', GANTRY_LIMITS_SHUTDOWN_GRACE_MS: '2500' },
    });
    assert.equal(config.listen.port, 9443);
    assert.equal(config.listen.healthPort, 9080);
    assert.equal(config.rateLimit.store, 'postgres');
    assert.equal(config.database.url, 'postgres://u:p@db:5432/gantry');
    assert.equal(config.telemetry.logLevel, 'debug');
    assert.equal(config.limits.shutdownGraceMs, 2500);
  });

  test('every config key has an environment variable named after its path, and each names a real key', () => {
    const names = envNamesOf(configSchema);
    const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
    for (const [name, path] of names) {
      assert.equal(name, `GANTRY_${path.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/\./g, '_').toUpperCase()}`);
      let node: JsonSchemaNode | undefined = schema;
      for (const key of path.split('.')) node = node?.properties?.[key];
      assert.ok(node, `${name} maps to ${path}, which is not in the config schema`);
    }
    assert.equal(names.get('GANTRY_LISTEN_HEALTH_PORT'), 'listen.healthPort');
    assert.equal(names.get('GANTRY_TELEMETRY_LOG_LEVEL'), 'telemetry.logLevel');
    assert.equal(names.get('GANTRY_RATE_LIMIT_METHODS'), 'rateLimit.methods');
    assert.equal(names.get('GANTRY_EVENTS_LINGER_MS'), 'events.lingerMs');
  });

  test('a renamed environment variable is refused with the name that replaced it', () => {
    assert.throws(() => loadConfig({ env: { GANTRY_PORT: '9443' } }), /GANTRY_PORT was renamed to GANTRY_LISTEN_PORT/);
    assert.throws(() => loadConfig({ env: { GANTRY_LOG_LEVEL: 'debug' } }), /GANTRY_LOG_LEVEL was renamed to GANTRY_TELEMETRY_LOG_LEVEL/);
  });

  test('a record-valued key takes JSON from the environment', () => {
    const config = loadConfig({ env: { GANTRY_RATE_LIMIT_METHODS: '{"/gantry.log.v1.LogService/Append":{"points":5,"windowSec":2}}' } });
    assert.deepEqual(config.rateLimit.methods, { '/gantry.log.v1.LogService/Append': { points: 5, windowSec: 2 } });
    assert.throws(() => loadConfig({ env: { GANTRY_RATE_LIMIT_METHODS: '{' } }), /GANTRY_RATE_LIMIT_METHODS: not valid JSON/);
  });

  test('a module slice is composed in with its defaults and environment variables, and gRPC targets get a peer address', () => {
    const modules = [
      { name: 'widgets', servesGrpc: true, config: { key: 'widgets', schema: z.strictObject({ sizeBytes: z.coerce.number().int().default(7) }).prefault({}) } },
      { name: 'relay', servesGrpc: false },
    ];
    const config = loadConfig({ env: { GANTRY_WIDGETS_SIZE_BYTES: '9', GANTRY_PEERS_WIDGETS_ADDRESS: 'dns:///widgets:7443' }, modules });
    assert.deepEqual((config as unknown as { widgets: unknown }).widgets, { sizeBytes: 9 });
    assert.equal(peerAddressOf(config, 'widgets'), 'dns:///widgets:7443');
    assert.equal(peerAddressOf(config, 'relay'), undefined);
    assert.deepEqual((loadConfig({ env: {}, modules }) as unknown as { widgets: unknown }).widgets, { sizeBytes: 7 });
    assert.throws(() => loadConfig({ env: { GANTRY_PEERS_RELAY_ADDRESS: 'x:1' }, modules }), /unknown environment variable GANTRY_PEERS_RELAY_ADDRESS/);
    assert.throws(() => configSchemaFor([{ name: 'bad', servesGrpc: false, config: { key: 'listen', schema: z.strictObject({}) } }]), /config key "listen" of module bad is taken/);
  });

  test('GANTRY_TEST_* names belong to test tooling and are never read as config', () => {
    const config = loadConfig({ env: { GANTRY_TEST_DATABASE_URL: 'postgres://x/y' } });
    assert.equal(config.database.url, undefined);
  });

  test('a bad value is refused with an error naming the environment variable and the key', () => {
    assert.throws(() => loadConfig({ env: { GANTRY_LISTEN_PORT: 'seventy' } }), (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /GANTRY_LISTEN_PORT/);
      assert.match(err.message, /listen\.port/);
      return true;
    });
    assert.throws(() => loadConfig({ env: { GANTRY_RATE_LIMIT_STORE: 'redis' } }), /GANTRY_RATE_LIMIT_STORE \(rateLimit\.store\)/);
    assert.throws(() => loadConfig({ env: { GANTRY_DATABASE_URL: 'mysql://db/gantry' } }), /GANTRY_DATABASE_URL \(database\.url\).*postgres:\/\//);
  });

  test('an unknown GANTRY_ environment variable is refused, so a typo is not silently ignored', () => {
    assert.throws(() => loadConfig({ env: { GANTRY_PROT: '9443' } }), (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /GANTRY_PROT/);
      assert.match(err.message, /GANTRY_LISTEN_PORT/, 'the error lists the known variables');
      return true;
    });
    // Variables read by tests and scripts are not server config, and not errors.
    assert.equal(loadConfig({ env: { GANTRY_TEST_DATABASE_URL: 'postgres://x/y', OTHER_VAR: '1' } }).listen.port, 7443);
  });

  test('a partial TLS configuration is refused', () => {
    assert.throws(() => loadConfig({ env: { GANTRY_TLS_CA_FILE: '/etc/gantry/ca.crt' } }), /caFile, certFile and keyFile/);
    assert.throws(() => loadConfig({ env: { GANTRY_TLS_CERT_FILE: '/c', GANTRY_TLS_KEY_FILE: '/k' } }), ConfigError);
    const full = loadConfig({ env: { GANTRY_TLS_CA_FILE: '/a', GANTRY_TLS_CERT_FILE: '/c', GANTRY_TLS_KEY_FILE: '/k' } });
    assert.deepEqual([full.tls.caFile, full.tls.certFile, full.tls.keyFile], ['/a', '/c', '/k']);
  });

  test('more than one JWT key source is refused', () => {
    assert.throws(() => loadConfig({ env: { GANTRY_AUTH_JWKS_FILE: '/jwks.json', GANTRY_AUTH_JWKS_URL: 'https://idp.example.com/jwks' } }), /only one of/);
    assert.throws(() => loadConfig({ env: { GANTRY_AUTH_HMAC_SECRET_FILE: '/secret' } }), /no longer accepted: an HS256 secret can mint tokens/);
  });

  test('a JSON config file is read, the environment overrides it, and explicit overrides win over both', () => {
    const file = configFile('precedence.json', { listen: { host: '127.0.0.1', port: 8000 }, rateLimit: { points: 7, methods: { '/a.B/C': { points: 2, windowSec: 5 } } } });
    const fromFile = loadConfig({ env: {}, file });
    assert.deepEqual(fromFile.listen, { host: '127.0.0.1', port: 8000, healthPort: 7080 });
    assert.equal(fromFile.rateLimit.points, 7);
    assert.deepEqual(fromFile.rateLimit.methods, { '/a.B/C': { points: 2, windowSec: 5 } });

    const withEnv = loadConfig({ env: { GANTRY_LISTEN_PORT: '9000' }, file });
    assert.equal(withEnv.listen.port, 9000);
    assert.equal(withEnv.listen.host, '127.0.0.1', 'keys the environment does not set keep the file value');

    const withOverrides = loadConfig({ env: { GANTRY_LISTEN_PORT: '9000' }, file, overrides: { listen: { port: 9100 } } });
    assert.equal(withOverrides.listen.port, 9100);
    assert.equal(withOverrides.listen.host, '127.0.0.1');
  });

  test('GANTRY_CONFIG_FILE names the config file', () => {
    const file = configFile('via-env.json', { dataDir: '/var/lib/gantry' });
    assert.equal(loadConfig({ env: { GANTRY_CONFIG_FILE: file } }).dataDir, '/var/lib/gantry');
  });

  test('a bad value in the config file is refused naming the key and the file', () => {
    const file = configFile('bad.json', { limits: { maxReceiveMessageBytes: 10 } });
    assert.throws(() => loadConfig({ env: {}, file }), (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /limits\.maxReceiveMessageBytes/);
      assert.ok(err.message.includes(file), err.message);
      return true;
    });
  });

  test('an unknown key in the config file is refused', () => {
    const file = configFile('unknown.json', { listen: { prot: 1 } });
    assert.throws(() => loadConfig({ env: {}, file }), /prot/);
  });

  test('a JWKS URL over plain http is refused; https is accepted', () => {
    assert.throws(() => loadConfig({ env: { GANTRY_AUTH_JWKS_URL: 'http://idp.example.com/jwks.json' } }), /GANTRY_AUTH_JWKS_URL \(auth\.jwksUrl\): must be an https:\/\/ URL/);
    assert.equal(loadConfig({ env: { GANTRY_AUTH_JWKS_URL: 'https://idp.example.com/jwks.json' } }).auth.jwksUrl, 'https://idp.example.com/jwks.json');
  });

  test('a request budget below the largest request is refused: that request could never be admitted', () => {
    assert.throws(
      () => loadConfig({ env: {}, overrides: { limits: { maxReceiveMessageBytes: 8 * 1024 * 1024, maxRequestBytesInFlight: 4 * 1024 * 1024 } } }),
      /limits\.maxRequestBytesInFlight: 4194304 is below limits\.maxReceiveMessageBytes/,
    );
  });

  test('a config file that is missing or not JSON is refused saying which', () => {
    assert.throws(() => loadConfig({ env: {}, file: join(dir, 'absent.json') }), /cannot read config file .*absent\.json/);
    assert.throws(() => loadConfig({ env: {}, file: configFile('broken.json', '{ "listen": ') }), /broken\.json is not valid JSON/);
  });
});
