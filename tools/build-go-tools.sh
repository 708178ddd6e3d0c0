#!/usr/bin/env bash
# Builds (once) the Go tools the GitOps and release checks run, from the Go module proxy, cached
# like the control plane (e2e/build-control-plane.sh) outside the repo, keyed by version:
#   kstatus     tools/kstatus: sigs.k8s.io/cli-utils' kstatus, the health library Flux uses
#   actionlint  github.com/rhysd/actionlint, the linter for .github/workflows
# Usage: tools/build-go-tools.sh [kstatus|actionlint]...  (default: both). Prints each binary's path.
set -euo pipefail

CLI_UTILS_VERSION=$(awk '$1 == "sigs.k8s.io/cli-utils" {print $2}' "$(dirname "$0")/kstatus/go.mod")
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-v1.7.12}
CACHE=${ROLLGUARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rollguard}
REPO=$(cd "$(dirname "$0")/.." && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

say() { echo "[build-go-tools] $*" >&2; }
need_go() {
  command -v go >/dev/null 2>&1 || { say "ERROR: Go is missing: install Go >= 1.26 (the tools are built from Go modules)"; exit 1; }
}

build_kstatus() {
  local key dir start
  key=$(cat "$REPO"/tools/kstatus/{main.go,go.mod,go.sum} | sha256sum | cut -c1-12)
  dir=$CACHE/kstatus-$CLI_UTILS_VERSION-$key
  if [ ! -x "$dir/kstatus" ]; then
    need_go
    start=$(date +%s)
    say "building kstatus (sigs.k8s.io/cli-utils $CLI_UTILS_VERSION)"
    mkdir -p "$dir"
    (cd "$REPO/tools/kstatus" && go build -trimpath -ldflags "-s -w" -o "$dir/kstatus.tmp" .)
    mv "$dir/kstatus.tmp" "$dir/kstatus"
    say "kstatus built in $(($(date +%s) - start))s"
  fi
  echo "$dir/kstatus"
}

build_actionlint() {
  local dir=$CACHE/actionlint-$ACTIONLINT_VERSION start
  if [ ! -x "$dir/actionlint" ]; then
    need_go
    start=$(date +%s)
    say "installing actionlint $ACTIONLINT_VERSION"
    GOBIN=$dir go install -trimpath -ldflags "-s -w" "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
    say "actionlint installed in $(($(date +%s) - start))s"
  fi
  echo "$dir/actionlint"
}

[ $# -gt 0 ] || set -- kstatus actionlint
for tool in "$@"; do
  case $tool in
    kstatus) build_kstatus ;;
    actionlint) build_actionlint ;;
    *) say "ERROR: unknown tool $tool (kstatus, actionlint)"; exit 2 ;;
  esac
done
