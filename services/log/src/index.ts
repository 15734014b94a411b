import { resolve } from 'node:path';
import { BATCH_REQUEST_BYTES, defineModule, defineService, scopesOf } from '@gantry/kit';
import { logServiceDefinition } from './api/entry-wire.js';
import { logHandlers } from './api/handlers.js';
import { logConfig, type LogConfig } from './config.js';
import { logScopes } from './api/scopes.js';
import { CheckpointSigner, loadOrCreateSigningKey } from './signer.js';
import { AppendNotifier } from './store/append-notifier.js';
import { GroupCommitter } from './store/group-commit.js';
import { DEFAULT_KEY_RETENTION, IdempotencyKeyPruner } from './store/key-pruner.js';
import { LOG_SCHEMA, LogStore, logMigrations } from './store/log-store.js';

/** The log target: an immutable, hash-chained, partitioned log with Merkle proofs and signed checkpoints. */
export const logService = defineModule<LogConfig>({
  name: 'log',
  config: logConfig,
  scopes: scopesOf([logScopes]),
  schema: { name: LOG_SCHEMA, migrations: logMigrations },
  async create({ db, config, settings, log, onShutdown }) {
    const store = new LogStore(db);
    const notifier = new AppendNotifier(db);
    await notifier.start();
    onShutdown(() => notifier.stop());
    const pruner = new IdempotencyKeyPruner(db, { ...DEFAULT_KEY_RETENTION, retentionMs: settings.idempotencyKeyRetentionHours * 3_600_000 }, (err) =>
      log.warn({ err }, 'pruning expired idempotency keys failed; retrying at the next interval'),
    );
    pruner.start();
    onShutdown(() => pruner.stop());
    const keyFile = settings.signingKeyFile ?? resolve(config.dataDir, 'log', 'checkpoint-key.pem');
    const signer = new CheckpointSigner(settings.origin, await loadOrCreateSigningKey(keyFile, !settings.signingKeyFile));
    return [
      defineService<typeof logServiceDefinition>({
        name: 'gantry.log.v1.LogService',
        definition: logServiceDefinition,
        scopes: logScopes,
        handlers: logHandlers({ store, committer: new GroupCommitter(store), notifier, signer, maxPayloadBytes: settings.maxPayloadBytes }),
        // A payload and room for the rest, so one slightly over log.maxPayloadBytes still gets a precise INVALID_ARGUMENT.
        maxRequestBytes: { append: settings.maxPayloadBytes + 64 * 1024, appendBatch: BATCH_REQUEST_BYTES },
      }),
    ];
  },
});

export { logConfig, logConfigSchema, type LogConfig } from './config.js';
export { logSink, auditPartition } from './sink.js';
