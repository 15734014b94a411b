#!/usr/bin/env bash
# A real Kubernetes API server for tests, the way controller-runtime's envtest runs one: etcd and
# kube-apiserver, no controller manager, scheduler or kubelet (objects are real, pods never run).
#
#   scripts/test-env/kube-apiserver.sh start [--no-build]  # install etcd, build if needed, start; prints the kubeconfig path
#   scripts/test-env/kube-apiserver.sh env                 # prints KUBECONFIG=<path> (exit 1 if not running)
#   scripts/test-env/kube-apiserver.sh stop                # stops both (no-op if not running)
#   scripts/test-env/kube-apiserver.sh build               # only builds kube-apiserver; prints the binary path
#   scripts/test-env/kube-apiserver.sh pin v1.33.N         # rewrites kubernetes/go.mod for another release
#
# kube-apiserver is built with Go from the module proxy by the module in kubernetes/ (its go.mod
# pins the version; see k8s-lib.sh) into ${XDG_CACHE_HOME:-~/.cache}/gantry/kubernetes-<version>/, once:
# about 4 minutes cold on 2 cores (96 MiB), then reused. `start --no-build` exits 4 instead of building.
# etcd comes from Debian's etcd-server (installed with apt-get when missing and root).
#
# Env: GANTRY_TEST_KUBE_PORT (the API server's port, default 56443; etcd takes the two ports below it),
#      GANTRY_TEST_KUBE_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/gantry).
# State: /tmp/gantry-kube-<uid>[-<port> when not 56443]/{pki,etcd,kubeconfig,*.log,*.pid}; every start begins with empty etcd
# data, so a stop/start clears the cluster. Only paths go to stdout; progress goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT

# PORTS: the API server's secure port, etcd's client and peer ports just below it (all on 127.0.0.1).
API_PORT="${GANTRY_TEST_KUBE_PORT:-56443}"
ETCD_PORT=$((API_PORT - 2))
ETCD_PEER_PORT=$((API_PORT - 1))

# Per port: start/stop act on the pids recorded here, so two instances on one machine (different
# GANTRY_TEST_KUBE_PORT) must not share the directory, or one's start stops the other's servers.
# The default port keeps the historical path.
BASE="/tmp/gantry-kube-$(id -u)"
[ "$API_PORT" = 56443 ] || BASE="$BASE-$API_PORT"
PKI="$BASE/pki"
KUBECONFIG_PATH="$BASE/kubeconfig"
READY_TIMEOUT_S=60     # etcd + kube-apiserver to /readyz; about 5 s here
STOP_TIMEOUT_S=15

log() { printf 'kube-apiserver.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=k8s-lib.sh
source "$ROOT/scripts/test-env/k8s-lib.sh"
MOD_DIR="$K8S_MOD_DIR"
BIN="$K8S_BIN_DIR/kube-apiserver"

build() {
  k8s_build kube-apiserver
  echo "$BIN"
}

pin() {
  local version="${1:?usage: kube-apiserver.sh pin v1.X.Y}"
  find_go kube-apiserver
  local staging="v0.${version#v1.}"
  local upstream; upstream="$(mktemp)"
  curl -fsS "$("$GO" env GOPROXY | cut -d, -f1)/k8s.io/kubernetes/@v/$version.mod" -o "$upstream" || die "the module proxy has no k8s.io/kubernetes $version"
  {
    sed -n '1,/^module /p' "$MOD_DIR/go.mod" | sed '$d'
    echo "module gantry.local/test-env/kubernetes"
    echo
    grep -E '^(go|godebug) ' "$upstream"
    echo
    sed -n '/^tool (/,/^)/p' "$MOD_DIR/go.mod"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "replace ("
    sed -n '/^replace (/,/^)/p' "$upstream" | awk -v v="$staging" '$2 == "=>" { printf "\t%s => %s %s\n", $1, $1, v }'
    echo ")"
  } >"$MOD_DIR/go.mod.new"
  rm -f "$upstream"
  mv "$MOD_DIR/go.mod.new" "$MOD_DIR/go.mod"
  (cd "$MOD_DIR" && "$GO" mod tidy >&2)
  log "pinned Kubernetes $version in $MOD_DIR/go.mod (staging modules at $staging)"
}

ensure_etcd() {
  command -v etcd >/dev/null && return 0
  [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null || die "etcd not found and cannot apt-get install it (not root): install Debian's etcd-server"
  log "installing etcd-server with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  local apt_opts=(-y -q --no-install-recommends -o Dpkg::Use-Pty=0)
  if ! apt-get install "${apt_opts[@]}" etcd-server >&2; then
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update -q >&2
    apt-get install "${apt_opts[@]}" etcd-server >&2
  fi
  command -v etcd >/dev/null || die "etcd-server installed but etcd is not on PATH"
}

alive() { [ -f "$BASE/$1.pid" ] && kill -0 "$(cat "$BASE/$1.pid")" 2>/dev/null; }

ready() {
  [ -f "$KUBECONFIG_PATH" ] && alive etcd && alive kube-apiserver &&
    curl -fsS --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
      "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

# One CA signs the serving certificate and the admin's client certificate (O=system:masters, so
# RBAC lets it do anything); the service-account key signs and verifies tokens.
make_pki() {
  [ -f "$PKI/admin.crt" ] && [ -f "$PKI/sa.key" ] && return 0
  rm -rf "$PKI"; mkdir -p "$PKI"; chmod 0700 "$PKI"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 3650 -subj "/CN=gantry-test-kube-ca" 2>/dev/null
  openssl req "${ec[@]}" -keyout "$PKI/serving.key" -out "$PKI/serving.csr" -subj "/CN=kube-apiserver" 2>/dev/null
  openssl x509 -req -in "$PKI/serving.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 -out "$PKI/serving.crt" \
    -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n') 2>/dev/null
  openssl req "${ec[@]}" -keyout "$PKI/admin.key" -out "$PKI/admin.csr" -subj "/O=system:masters/CN=gantry-test-admin" 2>/dev/null
  openssl x509 -req -in "$PKI/admin.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 -out "$PKI/admin.crt" \
    -extfile <(printf 'extendedKeyUsage=clientAuth\n') 2>/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  rm -f "$PKI"/*.csr
}

write_kubeconfig() {
  local b64=(base64 -w0)
  cat >"$KUBECONFIG_PATH.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: gantry-test
    cluster:
      server: https://127.0.0.1:$API_PORT
      certificate-authority-data: $("${b64[@]}" <"$PKI/ca.crt")
users:
  - name: gantry-test-admin
    user:
      client-certificate-data: $("${b64[@]}" <"$PKI/admin.crt")
      client-key-data: $("${b64[@]}" <"$PKI/admin.key")
contexts:
  - name: gantry-test
    context: {cluster: gantry-test, user: gantry-test-admin}
current-context: gantry-test
EOF
  chmod 0600 "$KUBECONFIG_PATH.tmp"
  mv "$KUBECONFIG_PATH.tmp" "$KUBECONFIG_PATH"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_one() { # name
  alive "$1" || { rm -f "$BASE/$1.pid"; return 0; }
  local pid; pid="$(cat "$BASE/$1.pid")"
  kill "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { log "$1 (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S} s; sending SIGKILL"; kill -9 "$pid" 2>/dev/null || true; }
  rm -f "$BASE/$1.pid"
}

stop() {
  mkdir -p "$BASE"
  exec 9>"$BASE/.lock"
  flock 9
  local was=0
  alive kube-apiserver || alive etcd && was=1
  stop_one kube-apiserver
  stop_one etcd
  rm -rf "$BASE/etcd" "$KUBECONFIG_PATH"
  [ "$was" -eq 1 ] && log "stopped"
  return 0
}

start() {
  local no_build="${1:-}"
  mkdir -p "$BASE"; chmod 0700 "$BASE"
  if ready; then echo "$KUBECONFIG_PATH"; return 0; fi
  local bin
  if [ "$no_build" = "--no-build" ] && [ ! -x "$BIN" ]; then
    log "kube-apiserver $KUBE_VERSION is not built yet ($BIN); run 'bash scripts/test-env/kube-apiserver.sh start' (about 4 min cold)"
    exit 4
  fi
  bin="$(build)"
  ensure_etcd
  exec 9>"$BASE/.lock"
  flock 9
  if ready; then echo "$KUBECONFIG_PATH"; return 0; fi
  # Half-started or crashed: start over from empty etcd data.
  stop_one kube-apiserver
  stop_one etcd
  for p in "$API_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT"; do
    port_free "$p" || die "port $p on 127.0.0.1 is taken by another process; set GANTRY_TEST_KUBE_PORT (the API port; etcd takes the two below it)"
  done
  make_pki
  local started; started=$(date +%s%N)
  rm -rf "$BASE/etcd"
  # setsid: the servers outlive this script and the test process that ran it; fd 9 (the lock) closed.
  setsid etcd --name gantry-test --data-dir "$BASE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "gantry-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    </dev/null >"$BASE/etcd.log" 2>&1 9>&- &
  echo $! >"$BASE/etcd.pid"
  setsid "$bin" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --tls-cert-file="$PKI/serving.crt" --tls-private-key-file="$PKI/serving.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=RBAC \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer="https://127.0.0.1:$API_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    </dev/null >"$BASE/kube-apiserver.log" 2>&1 9>&- &
  echo $! >"$BASE/kube-apiserver.pid"
  write_kubeconfig
  local i
  for ((i = 0; i < READY_TIMEOUT_S * 5; i++)); do
    ready && break
    alive etcd || { tail -n 20 "$BASE/etcd.log" >&2; die "etcd exited (log: $BASE/etcd.log)"; }
    alive kube-apiserver || { tail -n 20 "$BASE/kube-apiserver.log" >&2; die "kube-apiserver exited (log: $BASE/kube-apiserver.log)"; }
    sleep 0.2
  done
  if ! ready; then
    tail -n 20 "$BASE/kube-apiserver.log" >&2
    stop_one kube-apiserver; stop_one etcd
    die "kube-apiserver not ready within ${READY_TIMEOUT_S} s (log: $BASE/kube-apiserver.log)"
  fi
  log "Kubernetes $KUBE_VERSION API server ready on https://127.0.0.1:$API_PORT in $(( ($(date +%s%N) - started) / 1000000 )) ms (etcd $(etcd --version | awk 'NR == 1 { print $3 }'))"
  echo "$KUBECONFIG_PATH"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  env) ready || { log "not running; run 'bash scripts/test-env/kube-apiserver.sh start'"; exit 1; }; echo "KUBECONFIG=$KUBECONFIG_PATH" ;;
  build) build ;;
  pin) pin "${2:-}" ;;
  *) echo "usage: $0 start [--no-build] | env | stop | build | pin v1.X.Y" >&2; exit 2 ;;
esac
