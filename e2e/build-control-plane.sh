#!/usr/bin/env bash
# Builds (once) the real control plane the tests, the demo and the benchmarks run against:
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl (Kubernetes 1.36),
# etcd 3.6, kwok and helm, all from the Go module proxy. Binaries are cached outside the repo,
# keyed by version, and reused; a run with everything cached takes about a second.
# Prints the cache's bin directory on its last line.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.10}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.21.4}
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.4.1}
CACHE=${ROLLGUARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rollguard}
REPO=$(cd "$(dirname "$0")/.." && pwd)

say() { echo "[build-control-plane] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
# Go and its module proxy are only needed for what is not cached yet.
need_go() {
  [ -n "${go_checked:-}" ] && return 0
  command -v go >/dev/null 2>&1 || die "Go is missing: install Go >= 1.26 (https://go.dev/dl) and make sure 'go' is on PATH. The control plane is built from Go modules (cache: $CACHE)."
  go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  [ "${go_minor:-0}" -ge 26 ] || die "Go $(go env GOVERSION) is too old: Kubernetes ${K8S_VERSION} needs Go >= 1.26."
  go env GOPROXY | grep -qv '^off$' || die "GOPROXY is off: the Go module proxy is needed to fetch Kubernetes, etcd, kwok, helm and the Gateway API CRDs."
  go_checked=1
}

K8S_DIR=$CACHE/k8s-$K8S_VERSION
ETCD_DIR=$CACHE/etcd-$ETCD_VERSION
KWOK_DIR=$CACHE/kwok-$KWOK_VERSION
HELM_DIR=$CACHE/helm-$HELM_VERSION
GATEWAY_DIR=$CACHE/gateway-api-$GATEWAY_API_VERSION
BIN=$CACHE/bin
mkdir -p "$K8S_DIR" "$ETCD_DIR" "$KWOK_DIR" "$HELM_DIR" "$GATEWAY_DIR" "$BIN"

elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

if ! "$K8S_DIR/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $K8S_VERSION" \
   || [ ! -x "$K8S_DIR/kubectl" ] || [ ! -x "$K8S_DIR/kube-scheduler" ] || [ ! -x "$K8S_DIR/kube-controller-manager" ]; then
  need_go
  start=$(date +%s)
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  say "building Kubernetes $K8S_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl); cold: 10-25 min on 2 cores"
  (cd "$REPO/tools/k8s" && go mod download 2>&1 | sed 's/^/[go] /' >&2)
  say "modules downloaded after $(elapsed "$start"); compiling"
  (
    while sleep 60; do say "still compiling Kubernetes ($(elapsed "$start"))"; done
  ) & ticker=$!
  tmp=$(mktemp -d "$K8S_DIR.tmp.XXXX")
  trap 'kill $ticker 2>/dev/null || true; rm -rf "$tmp"' EXIT
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  ldflags="$ldflags -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z"
  (cd "$REPO/tools/k8s" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
     k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
     k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  mv "$tmp"/* "$K8S_DIR/" && rmdir "$tmp"
  kill $ticker 2>/dev/null || true
  say "Kubernetes $K8S_VERSION built in $(elapsed "$start")"
fi

if ! "$ETCD_DIR/etcd" --version 2>/dev/null | grep -q "etcd Version: ${ETCD_VERSION#v}"; then
  need_go
  start=$(date +%s)
  say "building etcd $ETCD_VERSION"
  (cd "$REPO/tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$ETCD_DIR/etcd" go.etcd.io/etcd/server/v3)
  say "etcd built in $(elapsed "$start")"
fi

if [ ! -x "$KWOK_DIR/kwok" ]; then
  need_go
  start=$(date +%s)
  say "installing kwok $KWOK_VERSION"
  GOBIN=$KWOK_DIR go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  say "kwok installed in $(elapsed "$start")"
fi
# kwok runs only with its Stage objects, which ship inside its module.
if [ ! -d "$KWOK_DIR/stage" ]; then
  need_go
  moddir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  rm -rf "$KWOK_DIR/stage.tmp" && mkdir -p "$KWOK_DIR/stage.tmp"
  cp -r "$moddir/kustomize/stage/." "$KWOK_DIR/stage.tmp/" && chmod -R u+w "$KWOK_DIR/stage.tmp"
  mv "$KWOK_DIR/stage.tmp" "$KWOK_DIR/stage"
fi

if [ ! -x "$HELM_DIR/helm" ]; then
  need_go
  start=$(date +%s)
  say "installing helm $HELM_VERSION"
  GOBIN=$HELM_DIR go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  say "helm installed in $(elapsed "$start")"
fi

# Gateway API CRDs (standard channel: HTTPRoute, Gateway, ...), read from the module zip.
if [ ! -d "$GATEWAY_DIR/crd-standard" ]; then
  need_go
  moddir=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  rm -rf "$GATEWAY_DIR/crd-standard.tmp" && mkdir -p "$GATEWAY_DIR/crd-standard.tmp"
  cp "$moddir"/config/crd/standard/*.yaml "$GATEWAY_DIR/crd-standard.tmp/" && chmod -R u+w "$GATEWAY_DIR/crd-standard.tmp"
  mv "$GATEWAY_DIR/crd-standard.tmp" "$GATEWAY_DIR/crd-standard"
  say "Gateway API $GATEWAY_API_VERSION CRDs cached in $GATEWAY_DIR/crd-standard"
fi

for f in "$K8S_DIR"/* "$ETCD_DIR/etcd" "$KWOK_DIR/kwok" "$HELM_DIR/helm"; do ln -sfn "$f" "$BIN/$(basename "$f")"; done
ln -sfn "$KWOK_DIR/stage" "$CACHE/kwok-stage"
ln -sfn "$GATEWAY_DIR/crd-standard" "$CACHE/gateway-api-crds"
echo "$BIN"
