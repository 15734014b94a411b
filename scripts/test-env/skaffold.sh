#!/usr/bin/env bash
# skaffold for the inner dev loop (skaffold.yaml, docs/helm.md) and tests/kube/skaffold.test.ts.
#
#   scripts/test-env/skaffold.sh [build]      # builds skaffold if needed; prints the binary path
#   scripts/test-env/skaffold.sh --no-build   # prints the path if built, else exits 4
#
# No skaffold download site answers here, but the Go module proxy serves the release's source:
# the module in skaffold/ (its go.mod pins the version and repeats skaffold's replace and exclude
# lines, which `go install` refuses) builds it with -trimpath into the directory
# ${GANTRY_TEST_KUBE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/gantry}/skaffold-<version>, once, then it is
# reused. Beside it goes a Helm 3 `helm` (module skaffold/helm3): skaffold v2.16 cannot drive Helm 4,
# the helm of scripts/test-env/helm.sh. So put that directory first on PATH, before the one holding
# kubectl (also needed, with docker):
#   PATH="$(dirname "$(bash scripts/test-env/skaffold.sh)"):$(bash scripts/test-env/helm.sh):$PATH" skaffold dev -p local-base
# Cold: see BUILD_MINUTES below (2 cores). Only the path goes to stdout; progress goes to stderr.
# Exit 3 if `go` is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
MOD_DIR="$ROOT/scripts/test-env/skaffold"
MODULE=github.com/GoogleContainerTools/skaffold/v2
HELM_MODULE=helm.sh/helm/v3
# The version a module's go.mod requires: `require M v` or a line `M v` inside `require (`.
required() { awk -v m="$1" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m && $2 ~ /^v/) { print $2; exit }' "$2"; }
VERSION="$(required "$MODULE" "$MOD_DIR/go.mod")"
HELM_VERSION="$(required "$HELM_MODULE" "$MOD_DIR/helm3/go.mod")"
CACHE_DIR="${GANTRY_TEST_KUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gantry}"
DIR="$CACHE_DIR/skaffold-$VERSION"
BIN="$DIR/skaffold"
BUILD_MINUTES=9 # skaffold (6 min) then helm (3.5 min), cold on 2 cores: 552 s measured, 103 + 58 MiB

log() { printf 'skaffold.sh: %s\n' "$*" >&2; }
# shellcheck source=go-lib.sh
source "$ROOT/scripts/test-env/go-lib.sh"
die() { log "error: $*"; exit 1; }

# go_build MODULE_DIR PACKAGE OUTPUT LDFLAGS: a static, -trimpath build; -v output as a counter.
go_build() {
  local dir="$1" pkg="$2" out="$3" ldflags="$4" start; start=$(date +%s)
  (
    cd "$dir"
    export GOFLAGS="-trimpath -buildvcs=false -mod=readonly" CGO_ENABLED=0
    "$GO" mod download >&2
    local total; total="$("$GO" list -deps "$pkg" | wc -l)"
    # As skaffold's Makefile does for its Linux releases (these tags), but without cgo.
    "$GO" build -v -tags timetzdata,osusergo,netgo -ldflags="$ldflags" -o "$out" "$pkg" 2>&1 | go_progress "${pkg##*/}" "$total" "$start"
    [ "${PIPESTATUS[0]}" -eq 0 ]
  ) 8>&- || { rm -f "$out"; die "go build of $pkg failed (see above)"; }
  log "built ${out##*/} ($(( $(stat -c %s "$out") / 1024 / 1024 )) MiB) in $(( $(date +%s) - start )) s"
}

build() {
  [ -n "$VERSION" ] || die "$MOD_DIR/go.mod does not require $MODULE"
  [ -n "$HELM_VERSION" ] || die "$MOD_DIR/helm3/go.mod does not require $HELM_MODULE"
  if [ -x "$BIN" ] && [ -x "$DIR/helm" ]; then echo "$BIN"; return 0; fi
  find_go skaffold
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.skaffold.lock"
  flock 8
  if [ -x "$BIN" ] && [ -x "$DIR/helm" ]; then echo "$BIN"; return 0; fi
  local start; start=$(date +%s)
  local tmp="$DIR.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  log "building skaffold $VERSION and helm $HELM_VERSION with $("$GO" env GOVERSION) into $DIR (cold: about $BUILD_MINUTES min on 2 cores; progress every 100 packages)"
  local vpkg="$MODULE/pkg/skaffold/version"
  go_build "$MOD_DIR" "$MODULE/cmd/skaffold" "$tmp/skaffold" "-s -w -X $vpkg.version=$VERSION -X $vpkg.buildDate=unknown"
  # As helm's Makefile: skaffold parses `helm version --client`, so the real version; and the
  # Kubernetes version of client-go as the default for `helm template` (else v1.20, below the
  # chart's kubeVersion, so `skaffold render --offline` would fail).
  local k8s; k8s="$(required k8s.io/client-go "$MOD_DIR/helm3/go.mod")"; k8s="${k8s#v0.}"; k8s="${k8s%%.*}"
  [ -n "$k8s" ] || die "$MOD_DIR/helm3/go.mod does not require k8s.io/client-go"
  local hl="-s -w -X $HELM_MODULE/internal/version.version=$HELM_VERSION -X $HELM_MODULE/internal/version.gitTreeState=clean"
  for p in pkg/lint/rules pkg/chartutil; do hl+=" -X $HELM_MODULE/$p.k8sVersionMajor=1 -X $HELM_MODULE/$p.k8sVersionMinor=$k8s"; done
  go_build "$MOD_DIR/helm3" "$HELM_MODULE/cmd/helm" "$tmp/helm" "$hl"
  rm -rf "$DIR"
  mv "$tmp" "$DIR"
  log "built skaffold $VERSION and helm $HELM_VERSION into $DIR in $(( $(date +%s) - start )) s"
  exec 8>&-
  echo "$BIN"
}

case "${1:-build}" in
  build) build ;;
  --no-build)
    [ -x "$BIN" ] && [ -x "$DIR/helm" ] || { log "skaffold $VERSION is not built yet ($DIR); run 'bash scripts/test-env/skaffold.sh' (about $BUILD_MINUTES min cold)"; exit 4; }
    echo "$BIN" ;;
  *) echo "usage: $0 [build | --no-build]" >&2; exit 2 ;;
esac
