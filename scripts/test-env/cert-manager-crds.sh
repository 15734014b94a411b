#!/usr/bin/env bash
# Prints the directory holding cert-manager's CRDs (deploy/crds of the pinned release), fetched
# once from the Go module proxy: no registry or download site is reachable here, but the proxy
# serves the cert-manager module, whose source tree carries the release's CRDs as plain YAML.
#
#   scripts/test-env/cert-manager-crds.sh     # stdout: the directory; progress on stderr
#
# Exit 3 if `go` is missing. The module lands in Go's module cache (GOMODCACHE), read-only.
set -euo pipefail

readonly MODULE=github.com/cert-manager/cert-manager
# The release the chart's cert-manager values are written for (cert-manager.io/v1).
readonly VERSION=v1.19.1

log() { printf 'cert-manager-crds.sh: %s\n' "$*" >&2; }
# shellcheck source=go-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-lib.sh"
find_go "fetching cert-manager's CRDs"

# `go mod download` needs no go.mod when given module@version; run it outside the repository's
# Go modules so none of them is touched.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
dir="$(GOFLAGS=-mod=mod "$GO" mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$dir" ] || [ ! -d "$dir/deploy/crds" ]; then
  log "$MODULE@$VERSION has no deploy/crds (go mod download gave '${dir}')"
  exit 1
fi
echo "$dir/deploy/crds"
