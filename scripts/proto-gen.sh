#!/usr/bin/env bash
# Regenerates Gantry's TypeScript contracts from proto/: lint, generate, and
# build the descriptor set the servers use for gRPC reflection and the
# gateway routes by, and the gateway's OpenAPI document.
# Usage: bash scripts/proto-gen.sh   (from any directory)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

buf=./node_modules/.bin/buf
plugin=./node_modules/.bin/protoc-gen-ts_proto
out_dir=proto/src/gen

for tool in "$buf" "$plugin"; do
  if [[ ! -x "$tool" ]]; then
    echo "proto-gen: $tool is missing; run 'npm ci' at the repository root first." >&2
    exit 1
  fi
done

echo "proto-gen [1/6] buf lint proto"
"$buf" lint proto

echo "proto-gen [2/6] cleaning $out_dir"
rm -rf "$out_dir"

echo "proto-gen [3/6] buf generate -> $out_dir (ts-proto, grpc-js)"
"$buf" generate proto --template proto/buf.gen.yaml

echo "proto-gen [4/6] buf build -> $out_dir/gantry.binpb (descriptor set with imports)"
"$buf" build proto -o "$out_dir/gantry.binpb"

# grpc.health.v1 is served too; reflection needs its descriptor as buf writes it (see server/reflection.ts).
echo "proto-gen [5/6] buf build -> $out_dir/health.binpb (grpc.health.v1 from grpc-health-check)"
"$buf" build node_modules/grpc-health-check/proto -o "$out_dir/health.binpb"

# The HTTP gateway's OpenAPI document, from the same descriptors and google.api.http options it routes by.
echo "proto-gen [6/6] OpenAPI document -> $out_dir/openapi.json"
./node_modules/.bin/node --import tsx scripts/openapi-gen.ts "$out_dir/gantry.binpb" "$out_dir/openapi.json"

echo "proto-gen done: $(find "$out_dir" -name '*.ts' | wc -l | tr -d ' ') TypeScript files in $out_dir"
