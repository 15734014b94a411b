# Sourced by kube-apiserver.sh and cluster.sh: builds Kubernetes components of one release with Go
# from the module proxy. Expects `log` and `die` functions. Not executable on its own.
#
# The module in kubernetes/ (its go.mod pins k8s.io/kubernetes and repeats its replace lines, since
# k8s.io/kubernetes cannot be `go install`ed) lists every component as a `tool`. Binaries go to
# ${GANTRY_TEST_KUBE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/gantry}/kubernetes-<version>/, built once and
# reused. Components asked for together are built by one `go build`, so shared packages compile once.
# Cold on 2 cores (measured in a fresh CI-like run, module downloads included): kube-apiserver alone
# 243 s; kube-controller-manager, kube-scheduler, kubelet and kube-proxy after it 88 s more.

K8S_MOD_DIR="$ROOT/scripts/test-env/kubernetes"
KUBE_VERSION="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$K8S_MOD_DIR/go.mod")"
K8S_CACHE_DIR="${GANTRY_TEST_KUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gantry}"
K8S_BIN_DIR="$K8S_CACHE_DIR/kubernetes-$KUBE_VERSION"
# shellcheck source=go-lib.sh
source "$ROOT/scripts/test-env/go-lib.sh"

# k8s_missing NAME...: prints the names whose binary is not built yet.
k8s_missing() {
  local name
  for name in "$@"; do [ -x "$K8S_BIN_DIR/$name" ] || echo "$name"; done
}

# k8s_build NAME...: builds the missing ones of these components (cmd/<NAME> of k8s.io/kubernetes)
# into K8S_BIN_DIR under a lock; a no-op when all exist.
k8s_build() {
  [ -n "$KUBE_VERSION" ] || die "$K8S_MOD_DIR/go.mod does not require k8s.io/kubernetes"
  [ -n "$(k8s_missing "$@")" ] || return 0
  find_go "Kubernetes $*"
  mkdir -p "$K8S_BIN_DIR"
  exec 8>"$K8S_CACHE_DIR/.kubernetes-build.lock"
  flock 8
  local missing; mapfile -t missing < <(k8s_missing "$@")
  if [ "${#missing[@]}" -eq 0 ]; then exec 8>&-; return 0; fi
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  # The version the binaries report (/version, the Node's kubeletVersion): helm checks kubeVersion.
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  local pkgs=() name
  for name in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
  local start; start=$(date +%s)
  log "building ${missing[*]} $KUBE_VERSION with $("$GO" env GOVERSION) into $K8S_BIN_DIR (progress every 100 packages)"
  local out="$K8S_BIN_DIR/.build.$$"
  rm -rf "$out"; mkdir -p "$out"
  (
    cd "$K8S_MOD_DIR"
    export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
    "$GO" mod download >&2
    local total; total="$("$GO" list -deps "${pkgs[@]}" | wc -l)"
    # -v names each package as it is compiled (cached ones are not): shown as a counter.
    "$GO" build -v -ldflags="$ldflags" -o "$out/" "${pkgs[@]}" 2>&1 | go_progress "${missing[*]}" "$total" "$start"
    [ "${PIPESTATUS[0]}" -eq 0 ]
  ) 8>&- || { rm -rf "$out"; die "go build of ${pkgs[*]} failed (see above)"; }
  for name in "${missing[@]}"; do mv -f "$out/$name" "$K8S_BIN_DIR/$name"; done
  rm -rf "$out"
  log "built ${missing[*]} ($(du -cm "${missing[@]/#/$K8S_BIN_DIR/}" | awk 'END { print $1 }') MiB) in $(( $(date +%s) - start )) s"
  exec 8>&-
}
