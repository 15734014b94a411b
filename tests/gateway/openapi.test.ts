// The gateway's OpenAPI document: valid OpenAPI 3 by a validator no one here wrote, current with the
// protos (proto-gen writes it), and covering every route the gateway serves.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { buildRouteTable, loadRegistry, openapiDocument } from '@gantry/gateway';
import { descriptorSetPath, openapiPath } from '@gantry/proto';
import { repoRoot } from '../support/gantry-process.js';

const text = readFileSync(openapiPath, 'utf8');
const document = JSON.parse(text) as { openapi: string; paths: Record<string, Record<string, { operationId: string }>> };

test('proto/src/gen/openapi.json is valid OpenAPI 3 (@seriousme/openapi-schema-validator)', async () => {
  const result = await new Validator().validate(document as never);
  assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
  assert.equal(document.openapi, '3.0.3');
});

test('proto/src/gen/openapi.json is what proto-gen makes of the current descriptors (run scripts/proto-gen.sh if not)', () => {
  const { version } = JSON.parse(readFileSync(`${repoRoot}package.json`, 'utf8')) as { version: string };
  const fresh = `${JSON.stringify(openapiDocument(buildRouteTable(loadRegistry(descriptorSetPath)), version), null, 2)}\n`;
  assert.equal(text, fresh);
});

test('the document has one operation for every route, server streams as text/event-stream', () => {
  const table = buildRouteTable(loadRegistry(descriptorSetPath));
  const operations = Object.values(document.paths).flatMap((item) => Object.values(item)).filter((op) => !op.operationId.startsWith('gateway_'));
  assert.equal(operations.length, table.routes.length);
  for (const own of ['/healthz', '/health', '/readyz', '/ping', '/ping/{service}', '/openapi.json']) assert.ok(document.paths[own]?.get, own);
  const read = document.paths['/v1/log/partitions/{partition}/entries']!.get as unknown as { responses: Record<string, { content: Record<string, unknown> }> };
  assert.deepEqual(Object.keys(read.responses['200']!.content), ['text/event-stream']);
});
