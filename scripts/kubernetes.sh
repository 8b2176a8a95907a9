#!/usr/bin/env bash
# A private Kubernetes API for the tests: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler on 127.0.0.1, plus the project's process-based node agent
# (scripts/k8s/node_agent.py; NOT a kubelet: pods run as host processes, images ignored;
# it serves containers' output for `kubectl logs`).
# `image-node` adds a second node whose pods run their (locally built) images with buildah.
#
# The three Kubernetes binaries are built once from Debian's `kubernetes` source package
# (bookworm: 1.20.2, the last release Debian shipped) with Debian's Go; etcd is Debian's
# etcd-server. Nothing but the Debian archive is used. A cold build takes ~10 min and
# 3 GB of disk; the binaries (~240 MB) are kept in $DIR/bin and reused.
#
#   scripts/kubernetes.sh          build if needed, start (idempotent), print the kubeconfig
#   scripts/kubernetes.sh build    only build
#   scripts/kubernetes.sh image-node   also start the image node (needs root and buildah)
#   scripts/kubernetes.sh stop     stop everything it started (state is kept)
#   scripts/kubernetes.sh reset    stop and forget the cluster's state (etcd data, keys)
#
# Environment: FARSIDE_INFRA_DIR (default /var/tmp/farside-infra; the cluster lives in
# $FARSIDE_INFRA_DIR/k8s), FARSIDE_K8S_PORT (API server, default 16443),
# FARSIDE_K8S_ETCD_PORT (default 12379; peers on +1), FARSIDE_K8S_PYTHON (the node
# agent's Python, needs kr8s; default the repository's .venv).
#
# The image node, farside-image-node, runs the node agent with `--runtime buildah`: each
# container inside its image (local images only, never pulled: build them with
# scripts/images.sh), with volumes, Services' variables and readiness probes, all on the
# host network (see scripts/k8s/image_runtime.py). It is labelled and tainted
# farside.dev/runtime=buildah(:NoSchedule), so only pods that ask for it land there:
#   nodeSelector: {farside.dev/runtime: buildah}
#   tolerations: [{key: farside.dev/runtime, value: buildah, effect: NoSchedule}]
# Its containers' logs are in $STATE/image-pods, claims' data in $STATE/volumes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${FARSIDE_INFRA_DIR:-/var/tmp/farside-infra}/k8s
BIN=$DIR/bin
STATE=$DIR/state
PORT=${FARSIDE_K8S_PORT:-16443}
ETCD_PORT=${FARSIDE_K8S_ETCD_PORT:-12379}
PY=${FARSIDE_K8S_PYTHON:-$ROOT/.venv/bin/python}
NODE=farside-node
IMAGE_NODE=farside-image-node
SOURCE_SUITE=bookworm  # the last Debian release with a `kubernetes` source package
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler)

say() { echo "kubernetes.sh: $*" >&2; }
die() { say "$*"; exit 1; }

built() {
  for c in "${COMPONENTS[@]}"; do [ -x "$BIN/$c" ] || return 1; done
}

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root (apt-get); run once as root, or: sudo $0 build"
}

build() {
  built && return 0
  need_root "building Kubernetes"
  local t0 work mirror
  t0=$(date +%s)
  work=$DIR/build
  say "building ${COMPONENTS[*]} from Debian's source package (once, ~10 min); log: $work/make.log"
  export DEBIAN_FRONTEND=noninteractive
  # reflect2 1.0.2 replaces the vendored 1.0.1, which crashes under Go >= 1.18
  local pkgs=(golang-go rsync make golang-github-modern-go-reflect2-dev)
  if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
  mkdir -p "$work" "$BIN"
  cd "$work"
  if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
    # apt-get source needs a deb-src entry; reuse the machine's own Debian mirror
    local src=/etc/apt/sources.list.d/farside-debsrc.sources
    if [ ! -e "$src" ]; then
      mirror=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -m1 '/debian$' | awk '{print $2}' || true)
      [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
      printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
        "$mirror" "$SOURCE_SUITE" /usr/share/keyrings/debian-archive-keyring.gpg >"$src"
      apt-get update -qq >/dev/null
    fi
    apt-get source --download-only "kubernetes/$SOURCE_SUITE" >/dev/null 2>"$work/apt-source.log" ||
      die "apt-get source kubernetes failed; see $work/apt-source.log"
  fi
  rm -rf src && mkdir src
  tar xzf kubernetes_*.orig.tar.gz -C src --strip-components=1
  cd src
  rm -rf vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/
  # the tarball predates Go modules: build in GOPATH mode, as Debian does
  mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
  GOPATH=$PWD/.go GO111MODULE=off CGO_ENABLED=0 HOME=$work/home GOCACHE=$work/gocache \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" \
    >"$work/make.log" 2>&1 || die "build failed; see $work/make.log"
  for c in "${COMPONENTS[@]}"; do cp "_output/local/go/bin/$c" "$BIN/$c.tmp"; done
  for c in "${COMPONENTS[@]}"; do mv "$BIN/$c.tmp" "$BIN/$c"; done
  cd "$work" && rm -rf src gocache home  # 3 GB; the tarball stays for a rebuild
  say "built in $(($(date +%s) - t0))s -> $BIN"
}

# ------------------------------------------------------------------ run

alive() {  # alive NAME: its recorded pid runs and is still that program (pids get reused)
  local pid
  [ -s "$STATE/$1.pid" ] || return 1
  pid=$(cat "$STATE/$1.pid")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

launch() {  # launch NAME PATTERN COMMAND...: start detached unless alive, log to NAME.log
  local name=$1 pattern=$2
  shift 2
  alive "$name" "$pattern" && return 0
  # 9>&-: a daemon must not inherit the lock, or it would hold it for as long as it runs
  setsid nohup "$@" >>"$STATE/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$STATE/$name.pid"
}

stop() {
  local name pid
  for name in image-node-agent node-agent kube-scheduler kube-controller-manager \
    kube-apiserver etcd; do
    [ -s "$STATE/$name.pid" ] || continue
    pid=$(cat "$STATE/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$STATE/$name.pid"
  done
  # the node agent ends its pods' processes on SIGTERM; if it was killed instead, the
  # next agent ends them from $STATE/pods.pids
  say "stopped"
}

certificates() {
  local pki=$STATE/pki
  mkdir -p "$pki"
  [ -s "$pki/ca.crt" ] && [ -s "$pki/apiserver.crt" ] && [ -s "$pki/sa.pub" ] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=farside-test-ca \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  local names=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
  printf '%s\n' "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,$names" "basicConstraints=CA:FALSE" \
    "keyUsage=digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" >"$pki/apiserver.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
  # service-account tokens are signed with this pair
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  echo "$(openssl rand -hex 24),admin,admin,system:masters" >"$pki/tokens.csv"
  rm -f "$STATE/kubeconfig"
}

kubeconfig() {
  [ -s "$STATE/kubeconfig" ] && grep -q "127.0.0.1:$PORT\"" "$STATE/kubeconfig" && return 0
  local token ca
  token=$(cut -d, -f1 "$STATE/pki/tokens.csv")
  ca=$(base64 -w0 <"$STATE/pki/ca.crt")
  umask 077
  cat >"$STATE/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: farside-test
  cluster: {server: "https://127.0.0.1:$PORT", certificate-authority-data: "$ca"}
users:
- name: admin
  user: {token: "$token"}
contexts:
- name: farside-test
  context: {cluster: farside-test, user: admin, namespace: default}
current-context: farside-test
KC
}

api() {  # api PATH: GET from the API server as admin
  local token
  token=$(cut -d, -f1 "$STATE/pki/tokens.csv")
  curl -sf --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $token" \
    "https://127.0.0.1:$PORT$1"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what not ready after ${seconds}s; logs in $STATE/*.log"
}

node_ready() {  # node_ready NAME
  api "/api/v1/nodes/$1" | "$PY" -c 'import json,sys
c = {x["type"]: x["status"] for x in json.load(sys.stdin)["status"].get("conditions", [])}
sys.exit(c.get("Ready") != "True")'
}

start() {
  local t0
  t0=$EPOCHREALTIME
  if ! command -v etcd >/dev/null; then
    need_root "installing etcd"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  fi
  [ -x "$PY" ] && "$PY" -c 'import kr8s' 2>/dev/null ||
    die "the node agent needs a Python with kr8s: run scripts/setup.sh, or set FARSIDE_K8S_PYTHON"
  mkdir -p "$STATE/etcd" "$STATE/pods"
  certificates
  kubeconfig
  local pki=$STATE/pki
  launch etcd "etcd" etcd --name farside --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "farside=http://127.0.0.1:$((ETCD_PORT + 1))" \
    --unsafe-no-fsync
  wait_for 30 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  launch kube-apiserver kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 --secure-port="$PORT" --insecure-port=0 \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" \
    --authorization-mode=Node,RBAC --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-account-issuer="https://127.0.0.1:$PORT" \
    --api-audiences="https://127.0.0.1:$PORT" \
    --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
    --enable-priority-and-fairness=false --kubelet-preferred-address-types=InternalIP
  wait_for 90 kube-apiserver api /readyz
  # its token and service-account controllers are needed: without them pods are refused
  launch kube-controller-manager kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/kubeconfig" --bind-address=127.0.0.1 --port=0 --secure-port=0 \
    --leader-elect=false --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" --use-service-account-credentials=false \
    --controllers='*,-nodeipam,-cloud-node-lifecycle,-service,-route'
  launch kube-scheduler kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$STATE/kubeconfig" --bind-address=127.0.0.1 --port=0 --secure-port=0 \
    --leader-elect=false
  launch node-agent "node_agent.py" "$PY" "$ROOT/scripts/k8s/node_agent.py" \
    --kubeconfig "$STATE/kubeconfig" --node "$NODE" --log-dir "$STATE/pods" \
    --pids-file "$STATE/pods.pids" --label farside.dev/pool=test
  wait_for 60 "node $NODE" node_ready "$NODE"
  # a Ready condition may be left from an earlier agent: this one must still be alive
  alive node-agent node_agent.py || die "the node agent exited; see $STATE/node-agent.log"
  # the controller-manager creates it; until then pods in `default` are refused
  wait_for 60 "service account default/default" \
    api /api/v1/namespaces/default/serviceaccounts/default
  local took
  took=$(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $t0}")
  say "ready in ${took}s (export KUBECONFIG=$STATE/kubeconfig)"
  echo "$STATE/kubeconfig"
}

image_node_possible() {
  [ "$(id -u)" = 0 ] ||
    die "the image node needs root: buildah runs its containers as root (chroot isolation)"
  command -v buildah >/dev/null ||
    die "the image node needs buildah: apt-get install buildah (scripts/images.sh does, and builds the images)"
}

image_node() {  # after start: the second node, whose pods run their images with buildah
  export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}  # where scripts/images.sh puts the images
  mkdir -p "$STATE/image-pods"
  launch image-node-agent "--node $IMAGE_NODE" "$PY" "$ROOT/scripts/k8s/node_agent.py" \
    --kubeconfig "$STATE/kubeconfig" --node "$IMAGE_NODE" --runtime buildah \
    --log-dir "$STATE/image-pods" --state-dir "$STATE" --pids-file "$STATE/image-pods.pids" \
    --kubelet-port 10251 \
    --label farside.dev/runtime=buildah --taint farside.dev/runtime=buildah:NoSchedule
  wait_for 60 "node $IMAGE_NODE" node_ready "$IMAGE_NODE"
  alive image-node-agent "--node $IMAGE_NODE" ||
    die "the image node agent exited; see $STATE/image-node-agent.log"
  say "image node $IMAGE_NODE ready (pods need its nodeSelector and toleration)"
}

mkdir -p "$DIR"
exec 9>"$DIR/lock"
flock 9  # one start/build at a time; a second caller waits, then finds it running
case "${1:-start}" in
  build) build ;;
  start) build && start ;;
  image-node) image_node_possible && build && start && image_node ;;
  stop) stop ;;
  reset) stop && rm -rf "$STATE" && say "state removed" ;;
  *) die "usage: $0 [start|build|image-node|stop|reset]" ;;
esac
