#!/usr/bin/env bash
# Installs the Go-based gRPC tools used by tests and benchmarks, at pinned versions:
#   grpcurl, grpc-health-probe, ghz
#
#   scripts/test-env/go-tools.sh          # prints only the bin dir on stdout
#
# Env: GANTRY_TEST_TOOLS_DIR (default <repo>/.tools/bin).
# Each tool gets a stamp file <bin>/.<tool>.version; a tool whose binary exists and whose stamp
# matches the pinned version is skipped. Exit 3 if `go` is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
cd "$ROOT"

# name|package|version|version variable set with -ldflags -X (as the projects' release builds do)
# Module versions as published on the Go module proxy; grpc-health-probe v0.4.61 needs Go >= 1.26.
# Note: ghz's proxy version list and @latest report only v0.93.0 (2021); v0.121.0 (2025-12) is
# the current release and resolves fine when asked for explicitly.
TOOLS=(
  "grpcurl|github.com/fullstorydev/grpcurl/cmd/grpcurl|v1.9.4|main.version"
  "grpc-health-probe|github.com/grpc-ecosystem/grpc-health-probe|v0.4.61|main.versionTag"
  "ghz|github.com/bojand/ghz/cmd/ghz|v0.121.0|main.version"
)

BIN_DIR="${GANTRY_TEST_TOOLS_DIR:-$ROOT/.tools/bin}"

log() { printf 'go-tools.sh: %s\n' "$*" >&2; }

GO="$(command -v go || true)"
if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
if [ -z "$GO" ]; then
  log "error: 'go' not found on PATH (nor /usr/local/go/bin/go)."
  log "       Install Go >= 1.26 (https://go.dev/dl/) to build grpcurl, grpc-health-probe and ghz."
  exit 3
fi

mkdir -p "$BIN_DIR"
BIN_DIR="$(cd "$BIN_DIR" && pwd)"

stamp_ok() { # name version
  [ -x "$BIN_DIR/$1" ] && [ -f "$BIN_DIR/.$1.version" ] && [ "$(cat "$BIN_DIR/.$1.version")" = "$2" ]
}

# Fast path: everything present at the pinned version, no lock, no go invocation.
all_ok=1
for t in "${TOOLS[@]}"; do
  IFS='|' read -r name _ ver _ <<<"$t"
  stamp_ok "$name" "$ver" || { all_ok=0; break; }
done

if [ "$all_ok" -eq 0 ]; then
  exec 9>"$BIN_DIR/.lock"
  flock 9
  for t in "${TOOLS[@]}"; do
    IFS='|' read -r name pkg ver vervar <<<"$t"
    if stamp_ok "$name" "$ver"; then
      log "$name $ver already installed"
      continue
    fi
    log "installing $name $ver ($pkg@$ver)"
    start=$(date +%s%N)
    rm -f "$BIN_DIR/.$name.version"
    # go install writes stdout/stderr only for errors/progress; keep stdout clean.
    GOBIN="$BIN_DIR" "$GO" install -ldflags="-X $vervar=$ver" "$pkg@$ver" >&2 9>&-
    [ -x "$BIN_DIR/$name" ] || { log "error: $BIN_DIR/$name missing after go install"; exit 1; }
    printf '%s\n' "$ver" >"$BIN_DIR/.$name.version.tmp"
    mv "$BIN_DIR/.$name.version.tmp" "$BIN_DIR/.$name.version"
    end=$(date +%s%N)
    log "$name $ver installed in $(( (end - start) / 1000000 )) ms"
  done
fi

printf '%s\n' "$BIN_DIR"
