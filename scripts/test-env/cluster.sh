#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for the cluster tests (tests/cluster) and for
# trying the chart: pods run, Services balance, DNS resolves, NetworkPolicies are enforced.
#
#   scripts/test-env/cluster.sh start [--no-build]  # build what is missing, start; prints the admin kubeconfig path
#   scripts/test-env/cluster.sh env                 # prints KUBECONFIG=<path> (exit 1 if not running)
#   scripts/test-env/cluster.sh load IMAGE...       # copies Docker images into the node (skips those already there)
#                                                   # (or push them to the cluster's registry, localhost:5000)
#   scripts/test-env/cluster.sh stop                # removes every pod, rule and the bridge; stops everything
#   scripts/test-env/cluster.sh build               # only builds the components
#   scripts/test-env/cluster.sh status              # one line per component; exit 0 when all run
#
# Nothing is pulled from anywhere. The pieces, all of one Kubernetes release (kubernetes/go.mod):
#   control plane   etcd (Debian), kube-apiserver, kube-controller-manager, kube-scheduler
#   node            kubelet and kube-proxy (iptables mode); containerd, runc and the CNI plugins
#                   (bridge, host-local, portmap, firewall) from Debian; a containerd of our own
#                   (own root, state and socket) beside Docker's, which stays untouched
#   add-ons         CoreDNS and local-path-provisioner (the default StorageClass) built from their Go
#                   modules; kube-router's NetworkPolicy firewall (docs/decisions.md says why it);
#                   crictl; the pause image from k8s.io/kubernetes' pause.c, built with gcc -static
# Kubernetes components are built by k8s-lib.sh, the add-ons by `go install`, into
# ${GANTRY_TEST_KUBE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/gantry}, once (cold, 2 cores: see BUILD_MINUTES).
# Images are made with Docker (`docker import` of a static binary; Gantry's own with
# scripts/image/build.sh) and imported into the node's containerd, which keeps them across restarts.
#
# Credentials are those of a real cluster: one CA; the node's client certificate is
# system:node:<node> (Node authorizer, NodeRestriction admission), every component has its own
# identity (controllers each their own ServiceAccount), kube-router and the provisioner read-only or
# least-privilege roles (cluster/rbac.yaml); only the admin kubeconfig printed by `start` is
# system:masters.
#
# Network: the bridge gantry0 at NODE_IP (the node's and the API server's address), pods in
# POD_CIDR, Services in SERVICE_CIDR (routed onto the bridge, so stray ClusterIP traffic stays on this
# machine), cluster DNS at DNS_IP, domain cluster.local. The host reaches pods and ClusterIPs directly.
#
# Needs root (kubelet, containerd, iptables) and a running Docker engine (scripts/test-env/docker.sh).
# Every start begins from empty etcd data: a stop/start gives a new, empty cluster. The kubelet's
# host sysctls are restored on stop. Only paths and KUBECONFIG= lines go to stdout; progress to stderr.
# State: ${GANTRY_CLUSTER_DIR:-/var/lib/gantry-cluster}; logs in its logs/ directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
ADDON_DIR="$ROOT/scripts/test-env/cluster"

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=k8s-lib.sh
source "$ROOT/scripts/test-env/k8s-lib.sh"

readonly NODE_NAME=gantry-node
readonly BRIDGE=gantry0
readonly POD_CIDR=10.88.0.0/16
readonly NODE_IP=10.88.0.1
readonly SERVICE_CIDR=10.96.0.0/16
readonly API_SERVICE_IP=10.96.0.1
readonly DNS_IP=10.96.0.10
readonly CLUSTER_DOMAIN=cluster.local
API_PORT="${GANTRY_CLUSTER_API_PORT:-6443}"
ETCD_PORT="${GANTRY_CLUSTER_ETCD_PORT:-12379}"
# An image registry on the host's loopback: `docker push localhost:$REGISTRY_PORT/<image>` and the
# node pulls it from there (containerd is told it speaks plain HTTP).
REGISTRY_PORT="${GANTRY_CLUSTER_REGISTRY_PORT:-5000}"
readonly API_PORT ETCD_PORT REGISTRY_PORT

BASE="${GANTRY_CLUSTER_DIR:-/var/lib/gantry-cluster}"
PKI="$BASE/pki"
ETC="$BASE/etc"
RUN="$BASE/run"
LOGS="$BASE/logs"
KUBECONFIG_PATH="$BASE/admin.kubeconfig"
CONTAINERD_SOCK="$BASE/containerd/containerd.sock"
readonly BASE PKI ETC RUN LOGS KUBECONFIG_PATH CONTAINERD_SOCK

# name|module package|version. CoreDNS at kubeadm 1.33's pin; kube-router v2.1.0 is the only v2 the
# module proxy serves; crictl v1.33.0 is refused by the proxy, v1.34.0 speaks the same CRI; the
# registry is CNCF Distribution's, for images pushed from the host (skaffold --default-repo).
ADDONS=(
  "coredns|github.com/coredns/coredns|v1.12.0"
  "kube-router|github.com/cloudnativelabs/kube-router/v2/cmd/kube-router|v2.1.0"
  "local-path-provisioner|github.com/rancher/local-path-provisioner|v0.0.30"
  "crictl|sigs.k8s.io/cri-tools/cmd/crictl|v1.34.0"
  "registry|github.com/distribution/distribution/v3/cmd/registry|v3.1.2"
)
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
# Every process `start` runs (status and readiness look at each).
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router local-path-provisioner registry"
PAUSE_VERSION=3.10.1 # build/pause/Makefile's TAG in this release
PAUSE_IMAGE="gantry.local/pause:$PAUSE_VERSION"
COREDNS_IMAGE="gantry.local/coredns:$(awk -F'|' '$1 == "coredns" { print $3 }' < <(printf '%s\n' "${ADDONS[@]}"))"
# The local-path helper Pods need a shell: the image base Gantry's image is built on (scripts/image/base.sh).
HELPER_IMAGE="${GANTRY_BASE_IMAGE:-gantry-base:node22}"
BUILD_MINUTES=12 # cold on 2 cores with kube-apiserver (4 min) and the add-ons (6 min): docs/testing.md
READY_TIMEOUT_S=120
STOP_TIMEOUT_S=15
# The kubelet sets these on the host (it expects them for its OOM and panic handling); stop puts them back.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

addon_bin() { # name -> path of its binary
  local entry name ver
  for entry in "${ADDONS[@]}"; do
    IFS='|' read -r name _ ver <<<"$entry"
    [ "$name" = "$1" ] && { echo "$K8S_CACHE_DIR/addons/$name-$ver/$name"; return 0; }
  done
  die "unknown add-on $1"
}
k8s_bin() { echo "$K8S_BIN_DIR/$1"; }
pause_bin() { echo "$K8S_CACHE_DIR/addons/pause-$PAUSE_VERSION/pause"; }

kubectl_bin() {
  [ -n "${KUBECTL:-}" ] && { echo "$KUBECTL"; return 0; }
  local dir; dir="$(bash "$ROOT/scripts/test-env/helm.sh")" || die "kubectl is missing: run 'npm ci'"
  KUBECTL="$dir/kubectl"
  echo "$KUBECTL"
}
kc() { "$(kubectl_bin)" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
crictl() { "$(addon_bin crictl)" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 30s "$@"; }

# ---------------------------------------------------------------------------------------------
# Build

missing_builds() {
  k8s_missing "${K8S_COMPONENTS[@]}"
  local entry name
  for entry in "${ADDONS[@]}"; do
    IFS='|' read -r name _ _ <<<"$entry"
    [ -x "$(addon_bin "$name")" ] || echo "$name"
  done
  [ -x "$(pause_bin)" ] || echo pause
}

build_addons() {
  local entry name pkg ver bin start
  for entry in "${ADDONS[@]}"; do
    IFS='|' read -r name pkg ver <<<"$entry"
    bin="$(addon_bin "$name")"
    [ -x "$bin" ] && continue
    find_go "$name"
    mkdir -p "$(dirname "$bin")"
    start=$(date +%s)
    log "building $name $ver ($pkg@$ver) with go install"
    # Static binaries (CGO off): CoreDNS runs alone in an image holding nothing else.
    # (The module downloads, a few hundred lines, are left out of the output.)
    if ! GOBIN="$(dirname "$bin")" CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" "$GO" install -ldflags="-s -w" "$pkg@$ver" 2>&1 |
      { grep -v '^go: downloading' || true; } >&2; then
      die "go install $pkg@$ver failed (see above)"
    fi
    [ -x "$bin" ] || die "$bin missing after go install of $pkg@$ver"
    log "built $name in $(( $(date +%s) - start )) s"
  done
  bin="$(pause_bin)"
  if [ ! -x "$bin" ]; then
    find_go pause
    command -v gcc >/dev/null || die "gcc is needed to build the pause binary: apt-get install gcc libc6-dev"
    local src
    src="$(cd "$K8S_MOD_DIR" && "$GO" mod download -json k8s.io/kubernetes | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')/build/pause/linux/pause.c"
    [ -f "$src" ] || die "pause.c not found in the k8s.io/kubernetes module ($src)"
    mkdir -p "$(dirname "$bin")"
    gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-gantry" -o "$bin.tmp" "$src" || die "gcc -static of $src failed (libc6-dev provides the static libc)"
    strip "$bin.tmp" && mv "$bin.tmp" "$bin"
    log "built pause from $src"
  fi
}

build() {
  k8s_build "${K8S_COMPONENTS[@]}"
  exec 7>"$K8S_CACHE_DIR/.cluster-addons.lock"
  flock 7
  build_addons
  exec 7>&-
}

# ---------------------------------------------------------------------------------------------
# Processes

# pid_alive PID: running, and not a zombie (PID 1 on these machines reaps orphans only every ~2 s).
pid_alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
alive() { [ -f "$RUN/$1.pid" ] && pid_alive "$(cat "$RUN/$1.pid")"; }

# launch NAME COMMAND...: runs it in its own session (it outlives this script), logging to logs/NAME.log.
launch() {
  local name="$1"; shift
  setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 7>&- 8>&- 9>&- &
  echo $! >"$RUN/$name.pid"
}

# stop_one NAME [SIGNAL]: SIGTERM (or SIGNAL), then SIGKILL after STOP_TIMEOUT_S.
stop_one() {
  alive "$1" || { rm -f "$RUN/$1.pid"; return 0; }
  local pid i; pid="$(cat "$RUN/$1.pid")"
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do pid_alive "$pid" || break; sleep 0.1; done
  if pid_alive "$pid"; then
    log "$1 (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S} s; sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$1.pid"
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND every 0.2 s; dies naming WHAT and the log to read.
wait_for() {
  local what="$1" seconds="$2" i; shift 2
  for ((i = 0; i < seconds * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what not ready within $seconds s (logs: $LOGS)"
}

api_ready() {
  curl -fsS --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://$NODE_IP:$API_PORT/readyz" >/dev/null 2>&1
}

running() {
  local p
  for p in $COMPONENTS; do
    alive "$p" || return 1
  done
  [ -f "$KUBECONFIG_PATH" ] && api_ready
}

# ---------------------------------------------------------------------------------------------
# PKI: one CA signs every serving and client certificate; kept across restarts so kubeconfigs stay valid.

# cert NAME SUBJECT EXTENSIONS: an EC P-256 key and a certificate signed by the CA.
cert() {
  local name="$1" subj="$2" ext="$3"
  [ -f "$PKI/$name.crt" ] && return 0
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 -out "$PKI/$name.crt" \
    -extfile <(printf '%s\n' "$ext") 2>/dev/null
  rm -f "$PKI/$name.csr"
}

make_pki() {
  mkdir -p "$PKI"; chmod 0700 "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    rm -f "$PKI"/*
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
      -days 3650 -subj "/CN=gantry-cluster-ca" 2>/dev/null
  fi
  local client="extendedKeyUsage=clientAuth" dns="kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.$CLUSTER_DOMAIN"
  cert kube-apiserver "/CN=kube-apiserver" "subjectAltName=IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:${dns//,/,DNS:}
extendedKeyUsage=serverAuth"
  cert kube-apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client" "$client"
  cert admin "/O=system:masters/CN=gantry-cluster-admin" "$client"
  cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  cert kube-scheduler "/CN=system:kube-scheduler" "$client"
  cert kube-proxy "/CN=system:kube-proxy" "$client"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
  cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME
extendedKeyUsage=serverAuth"
  cert kube-router "/CN=gantry-cluster:kube-router" "$client"
  cert local-path-provisioner "/CN=gantry-cluster:local-path-provisioner" "$client"
  if [ ! -f "$PKI/sa.key" ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$PKI/sa.key" 2>/dev/null
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  chmod 0600 "$PKI"/*.key
}

# kubeconfig NAME: $ETC/NAME.kubeconfig with NAME's client certificate (the admin's goes to KUBECONFIG_PATH).
kubeconfig() {
  local name="$1" out="$ETC/$1.kubeconfig"
  [ "$name" = admin ] && out="$KUBECONFIG_PATH"
  local b64=(base64 -w0)
  cat >"$out.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: gantry-cluster
    cluster:
      server: https://$NODE_IP:$API_PORT
      certificate-authority-data: $("${b64[@]}" <"$PKI/ca.crt")
users:
  - name: $name
    user:
      client-certificate-data: $("${b64[@]}" <"$PKI/$name.crt")
      client-key-data: $("${b64[@]}" <"$PKI/$name.key")
contexts:
  - name: gantry-cluster
    context: {cluster: gantry-cluster, user: $name}
current-context: gantry-cluster
EOF
  chmod 0600 "$out.tmp"
  mv "$out.tmp" "$out"
}

# ---------------------------------------------------------------------------------------------
# Host network

preflight() {
  [ "$(id -u)" -eq 0 ] || die "the cluster needs root (kubelet, containerd and iptables)"
  local want=() cmd pkg
  for cmd in containerd:containerd runc:runc etcd:etcd-server iptables:iptables ipset:ipset conntrack:conntrack; do
    command -v "${cmd%%:*}" >/dev/null || want+=("${cmd#*:}")
  done
  [ -x /usr/lib/cni/bridge ] || want+=(containernetworking-plugins)
  for pkg in gcc libc6-dev; do dpkg -s "$pkg" >/dev/null 2>&1 || want+=("$pkg"); done
  if [ "${#want[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${want[*]} and apt-get is not available: install them"
    log "installing ${want[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    local opts=(-y -q --no-install-recommends -o Dpkg::Use-Pty=0)
    apt-get install "${opts[@]}" "${want[@]}" >&2 || { apt-get update -q >&2 && apt-get install "${opts[@]}" "${want[@]}" >&2; }
  fi
  docker info >/dev/null 2>&1 || die "no Docker engine answers (images are made with it): run 'bash scripts/test-env/docker.sh start'"
  [ -d /proc/sys/net/bridge ] || die "this kernel has no br_netfilter (/proc/sys/net/bridge): Services between pods of one bridge need it"
}

setup_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  # Docker sets FORWARD's policy to DROP; the CNI firewall plugin accepts each pod's traffic in
  # CNI-FORWARD. Pods starting at once race to create that chain, so it exists before the first.
  # The rules are the plugin's own (same comments), so it finds them instead of adding more.
  iptables -w -N CNI-FORWARD 2>/dev/null || true
  iptables -w -N CNI-ADMIN 2>/dev/null || true
  local admin=(CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN)
  local jump=(FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD)
  iptables -w -C "${admin[@]}" 2>/dev/null || iptables -w -A "${admin[@]}"
  iptables -w -C "${jump[@]}" 2>/dev/null || iptables -w -I "${jump[@]:0:1}" 1 "${jump[@]:1}"
  mkdir -p "$ETC/cni" "$BASE/cni/ipam"
  cat >"$ETC/cni/10-gantry.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "gantry",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "hairpinMode": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$BASE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "iptables"}
  ]
}
EOF
}

save_sysctls() {
  [ -f "$BASE/sysctls.saved" ] && return 0
  local s
  for s in "${KUBELET_SYSCTLS[@]}"; do printf '%s=%s\n' "$s" "$(sysctl -n "$s")"; done >"$BASE/sysctls.saved"
}

restore_sysctls() {
  [ -f "$BASE/sysctls.saved" ] || return 0
  local line
  while IFS= read -r line; do sysctl -qw "$line" 2>/dev/null || log "could not restore $line"; done <"$BASE/sysctls.saved"
  rm -f "$BASE/sysctls.saved"
}

# ---------------------------------------------------------------------------------------------
# Images

# docker_image_from_binary IMAGE BINARY: an image holding only BINARY at /, its entrypoint.
docker_image_from_binary() {
  local image="$1" bin="$2" name; name="$(basename "$2")"
  local id; id="$(docker image inspect -f '{{index .Config.Labels "gantry.binary"}}' "$image" 2>/dev/null || true)"
  local sum; sum="$(sha256sum "$bin" | cut -c1-16)"
  [ "$id" = "$sum" ] && return 0
  tar -C "$(dirname "$bin")" --owner=0 --group=0 -c "$name" |
    docker import -c "ENTRYPOINT [\"/$name\"]" -c "LABEL gantry.binary=$sum" - "$image" >/dev/null
}

# load IMAGE...: docker save | ctr import, for each image whose config digest the node lacks.
load() {
  running || die "the cluster is not running: run 'bash scripts/test-env/cluster.sh start'"
  load_images "$@"
}

load_images() {
  local image want have
  for image in "$@"; do
    want="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null)" || die "Docker has no image $image (build it first)"
    have="$(crictl inspecti -o go-template --template '{{.status.id}}' "$image" 2>/dev/null || true)"
    [ "$have" = "$want" ] && continue
    local start; start=$(date +%s%N)
    docker save "$image" | ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --no-unpack=false - >/dev/null ||
      die "importing $image into the node's containerd failed"
    log "loaded $image into the node in $(( ($(date +%s%N) - start) / 1000000 )) ms"
  done
}

# ---------------------------------------------------------------------------------------------
# Components

start_etcd() {
  rm -rf "$BASE/etcd"
  launch etcd etcd --name gantry-cluster --data-dir "$BASE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "gantry-cluster=http://127.0.0.1:$((ETCD_PORT + 1))"
}

start_apiserver() {
  launch kube-apiserver "$(k8s_bin kube-apiserver)" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$PKI/kube-apiserver.crt" --tls-private-key-file="$PKI/kube-apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$PKI/kube-apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/kube-apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true --profiling=false
}

start_controller_manager() {
  local kcfg="$ETC/kube-controller-manager.kubeconfig"
  launch kube-controller-manager "$(k8s_bin kube-controller-manager)" \
    --kubeconfig="$kcfg" --authentication-kubeconfig="$kcfg" --authorization-kubeconfig="$kcfg" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --cluster-cidr="$POD_CIDR" --profiling=false
}

start_scheduler() {
  local kcfg="$ETC/kube-scheduler.kubeconfig"
  launch kube-scheduler "$(k8s_bin kube-scheduler)" \
    --kubeconfig="$kcfg" --authentication-kubeconfig="$kcfg" --authorization-kubeconfig="$kcfg" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false
}

start_containerd() {
  mkdir -p "$BASE/containerd/root" "$BASE/containerd/state"
  cat >"$ETC/containerd.toml" <<EOF
version = 2
root = "$BASE/containerd/root"
state = "$BASE/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # runc cannot set a negative oom_score_adj in this VM (no CAP_SYS_RESOURCE): without this every
  # sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ETC/cni"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."localhost:$REGISTRY_PORT"]
    endpoint = ["http://localhost:$REGISTRY_PORT"]
EOF
  launch containerd containerd --config "$ETC/containerd.toml"
  wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
}

start_kubelet() {
  mkdir -p "$BASE/kubelet" "$BASE/pod-logs"
  cat >"$ETC/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: /etc/resolv.conf
podLogsDir: $BASE/pod-logs
# Images are imported, never pulled: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# A developer machine's disk may be fuller than a node's defaults tolerate.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
EOF
  launch kubelet "$(k8s_bin kubelet)" --config="$ETC/kubelet.yaml" --kubeconfig="$ETC/kubelet.kubeconfig" \
    --root-dir="$BASE/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
}

start_kube_proxy() {
  cat >"$ETC/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $ETC/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  launch kube-proxy "$(k8s_bin kube-proxy)" --config="$ETC/kube-proxy.yaml"
}

start_kube_router() {
  # Only the NetworkPolicy firewall: routes come from the bridge, Services from kube-proxy.
  launch kube-router "$(addon_bin kube-router)" --kubeconfig="$ETC/kube-router.kubeconfig" \
    --hostname-override="$NODE_NAME" --run-firewall=true --run-router=false --run-service-proxy=false \
    --enable-cni=false --metrics-port=0 --health-port=20244
}

start_local_path_provisioner() {
  mkdir -p "$BASE/volumes"
  local dir="$ETC/local-path"
  mkdir -p "$dir"
  kc -n local-path-storage get configmap local-path-config -o 'jsonpath={.data.config\.json}' >"$dir/config.json"
  launch local-path-provisioner "$(addon_bin local-path-provisioner)" start \
    --kubeconfig "$ETC/local-path-provisioner.kubeconfig" --namespace local-path-storage \
    --config "$dir/config.json" --service-account-name local-path-helper --helper-image "$HELPER_IMAGE"
}

start_registry() {
  mkdir -p "$BASE/registry"
  cat >"$ETC/registry.yaml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $BASE/registry}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
  # No OpenTelemetry collector here: the registry would log a failed export every few seconds.
  OTEL_TRACES_EXPORTER=none launch registry "$(addon_bin registry)" serve "$ETC/registry.yaml"
  wait_for "the registry on 127.0.0.1:$REGISTRY_PORT" 30 curl -fsS --max-time 1 "http://127.0.0.1:$REGISTRY_PORT/v2/"
}

# addon FILE: applies cluster/FILE with its @PLACEHOLDERS@ filled in.
addon() {
  sed -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" \
    -e "s|@HELPER_IMAGE@|$HELPER_IMAGE|g" -e "s|@VOLUMES_DIR@|$BASE/volumes|g" "$ADDON_DIR/$1" |
    kc apply --server-side --field-manager=gantry-cluster -f - >/dev/null
}

node_ready() {
  [ "$(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
dns_ready() {
  [ "$(kc -n kube-system get deployment coredns -o 'jsonpath={.status.readyReplicas}' 2>/dev/null)" = 1 ]
}
default_sa() { kc -n default get serviceaccount default; }

start() {
  local no_build="${1:-}"
  mkdir -p "$BASE" "$RUN" "$LOGS" "$ETC"; chmod 0700 "$BASE"
  exec 9>"$BASE/.lock"
  flock 9
  if running; then echo "$KUBECONFIG_PATH"; return 0; fi
  preflight
  local missing; missing="$(missing_builds | xargs)"
  if [ -n "$missing" ]; then
    [ "$no_build" = "--no-build" ] && { log "not built yet: $missing; run 'bash scripts/test-env/cluster.sh start' (about $BUILD_MINUTES min cold)"; exit 4; }
    build
  fi
  local started; started=$(date +%s%N)
  # Half-started or crashed: take everything down and start over.
  teardown quiet
  make_pki
  local name
  for name in kube-controller-manager kube-scheduler kube-proxy kubelet kube-router local-path-provisioner admin; do kubeconfig "$name"; done
  save_sysctls
  setup_network

  start_etcd
  start_apiserver
  wait_for kube-apiserver "$READY_TIMEOUT_S" api_ready
  addon rbac.yaml
  addon local-path.yaml
  addon coredns.yaml
  start_controller_manager
  start_scheduler

  start_registry
  start_containerd
  docker_image_from_binary "$PAUSE_IMAGE" "$(pause_bin)"
  docker_image_from_binary "$COREDNS_IMAGE" "$(addon_bin coredns)"
  bash "$ROOT/scripts/image/base.sh" >/dev/null
  load_images "$PAUSE_IMAGE" "$COREDNS_IMAGE" "$HELPER_IMAGE"
  start_kubelet
  start_kube_proxy
  wait_for "node $NODE_NAME" "$READY_TIMEOUT_S" node_ready
  # kube-router exits when its Node does not exist yet.
  start_kube_router
  start_local_path_provisioner
  # Pods are refused until the controller-manager has made the namespace's default ServiceAccount.
  wait_for "the default ServiceAccount" "$READY_TIMEOUT_S" default_sa
  wait_for "CoreDNS" "$READY_TIMEOUT_S" dns_ready
  for name in kube-proxy kube-router local-path-provisioner; do
    alive "$name" || { tail -n 20 "$LOGS/$name.log" >&2; die "$name exited (log: $LOGS/$name.log)"; }
  done
  log "Kubernetes $KUBE_VERSION cluster ready in $(( ($(date +%s%N) - started) / 1000000 )) ms: node $NODE_NAME at $NODE_IP, API https://$NODE_IP:$API_PORT"
  echo "$KUBECONFIG_PATH"
}

# remove_chains iptables|ip6tables: jumps from the built-in chains into KUBE-* and CNI-* chains, then
# those chains, in every table. Docker's chains are left alone.
remove_chains() {
  local cmd="$1" table chain n chains
  command -v "$cmd" >/dev/null || return 0
  for table in filter nat mangle raw; do
    for chain in INPUT FORWARD OUTPUT PREROUTING POSTROUTING; do
      for n in $("$cmd" -w -t "$table" -L "$chain" --line-numbers -n 2>/dev/null | awk '$2 ~ /^(KUBE-|CNI-)/ { print $1 }' | sort -rn); do
        "$cmd" -w -t "$table" -D "$chain" "$n" 2>/dev/null || true
      done
    done
    chains="$("$cmd" -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ { print $2 }')"
    for chain in $chains; do "$cmd" -w -t "$table" -F "$chain" 2>/dev/null || true; done
    for chain in $chains; do "$cmd" -w -t "$table" -X "$chain" 2>/dev/null || true; done
  done
}

# teardown [quiet]: every pod and container removed (through CRI, so networks are torn down), every
# process stopped, iptables rules and the bridge removed, mounts released, cluster data deleted.
# Images in containerd and the PKI stay.
teardown() {
  local was=0 name
  for name in kubelet containerd kube-apiserver etcd; do alive "$name" && was=1; done
  # Nothing here needs a graceful stop: cluster data is deleted, pods are removed through CRI, rules
  # are cleaned below. (A graceful kube-apiserver waits up to 60 s for its connections.)
  stop_one kubelet KILL
  if alive containerd; then
    crictl rmp --all --force >/dev/null 2>&1 || log "removing pods through CRI failed; killing what is left"
  fi
  stop_one containerd
  # Anything still running in the kubelet's cgroups (a crashed containerd's orphans).
  local procs
  procs="$( { find /sys/fs/cgroup/pids/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null || true; } | sort -u | xargs)"
  [ -z "$procs" ] || { log "killing leftover container processes: $procs"; kill -9 $procs 2>/dev/null || true; }
  pkill -9 -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
  for name in registry local-path-provisioner kube-router kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_one "$name" KILL; done
  # Rules: kube-proxy's own clean-up, then every KUBE-* and CNI-* chain left (the kubelet's canaries,
  # kube-router's firewall, whose --cleanup-config leaves its rules in place) and kube-router's ipsets.
  [ -x "$(k8s_bin kube-proxy)" ] && "$(k8s_bin kube-proxy)" --cleanup >/dev/null 2>&1 || true
  remove_chains iptables
  remove_chains ip6tables
  ipset list -n 2>/dev/null | grep '^KUBE-' | xargs -r -n1 ipset destroy 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  # Volume mounts the kubelet made (secrets, projected tokens), deepest first.
  findmnt -rn -o TARGET | grep -E "^$BASE/(kubelet|containerd/state)(/|$)" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  local cg
  for cg in /sys/fs/cgroup/*/kubepods; do [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  rm -rf "$BASE/etcd" "$BASE/kubelet" "$BASE/volumes" "$BASE/pod-logs" "$BASE/cni" "$KUBECONFIG_PATH"
  restore_sysctls
  [ "$was" -eq 1 ] && [ "${1:-}" != quiet ] && log "stopped"
  return 0
}

stop() {
  mkdir -p "$BASE" "$RUN"
  exec 9>"$BASE/.lock"
  flock 9
  [ "$(id -u)" -eq 0 ] || die "stopping the cluster needs root"
  teardown
}

status() {
  local p ok=0
  for p in $COMPONENTS; do
    if alive "$p"; then printf '%-24s running (pid %s)\n' "$p" "$(cat "$RUN/$p.pid")" >&2; else printf '%-24s stopped\n' "$p" >&2; ok=1; fi
  done
  return "$ok"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  env) running || { log "not running; run 'bash scripts/test-env/cluster.sh start'"; exit 1; }; echo "KUBECONFIG=$KUBECONFIG_PATH" ;;
  load) shift; load "$@" ;;
  build) build ;;
  status) status ;;
  *) echo "usage: $0 start [--no-build] | env | load IMAGE... | stop | build | status" >&2; exit 2 ;;
esac
