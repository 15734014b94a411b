#!/usr/bin/env bash
# Builds the gantry image from this checkout: the local base image (scripts/image/base.sh, cached),
# the bundle (scripts/image/bundle.sh), then `docker build`. Prints the image name on stdout.
#
#   GANTRY_IMAGE=gantry:dev                 tag to build
#   BASE_IMAGE=node:22-bookworm-slim        use a registry image instead of the local base
#   PUSH_IMAGE=true                         docker push it afterwards (skaffold sets this with --push)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export PATH="$root/node_modules/.bin:$PATH"

IMAGE="${GANTRY_IMAGE:-gantry:dev}"
log() { printf 'build.sh: %s\n' "$*" >&2; }
started=$(date +%s)

base="${BASE_IMAGE:-$(bash scripts/image/base.sh)}"
# One build at a time per checkout: tests may build concurrently (tests/containers, skaffold), and
# both would rewrite build/image/app under each other's docker build.
mkdir -p build
exec 9>build/.image-build.lock
flock 9
log "bundling the gantry program"
bash scripts/image/bundle.sh
log "docker build -t $IMAGE (base $base)"
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
version="$(node -p "require('./package.json').version")"
docker build -q --build-arg "BASE_IMAGE=$base" --build-arg "REVISION=$revision" --build-arg "VERSION=$version" \
  -t "$IMAGE" . >/dev/null
size="$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
log "built $IMAGE in $(( $(date +%s) - started )) s: $size"
# skaffold's contract for custom builders: push when it sets PUSH_IMAGE=true (--push, a remote cluster).
if [ "${PUSH_IMAGE:-false}" = true ]; then
  log "docker push $IMAGE"
  docker push -q "$IMAGE" >/dev/null
fi
echo "$IMAGE"
