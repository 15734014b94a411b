#!/usr/bin/env bash
# Bundles the gantry program for the container image into build/image/app (scripts/image/bundle.ts).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export PATH="$root/node_modules/.bin:$PATH"
exec tsx scripts/image/bundle.ts "$@"
