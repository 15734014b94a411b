// Writes the gateway's OpenAPI document (proto/src/gen/openapi.json) from the descriptor set
// proto-gen just built. Run by scripts/proto-gen.sh; deterministic, so CI can check it is current.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildRouteTable, loadRegistry, openapiDocument } from '@gantry/gateway';

const root = fileURLToPath(new URL('..', import.meta.url));
const [descriptors = `${root}proto/src/gen/gantry.binpb`, out = `${root}proto/src/gen/openapi.json`] = process.argv.slice(2);
const { version } = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { version: string };
const table = buildRouteTable(loadRegistry(descriptors));
writeFileSync(out, `${JSON.stringify(openapiDocument(table, version), null, 2)}\n`);
console.log(`openapi-gen: ${table.routes.length} routes -> ${out}`);
