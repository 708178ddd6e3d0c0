#!/usr/bin/env bash
# Builds (once) the Argo Rollouts controller that `make bench` runs side by side with rollguard,
# from its Go module at a pinned version, the way e2e/build-control-plane.sh builds the control
# plane. Its CRDs come from the same module (manifests/crds). The module's go.mod carries replace
# directives (k8s.io/* v0.0.0 => v0.29.3), so it is built as its own main module, from a copy.
# Prints the cache directory (holding rollouts-controller and crds/) on its last line.
set -euo pipefail

ARGO_ROLLOUTS_VERSION=${ARGO_ROLLOUTS_VERSION:-v1.8.3}
CACHE=${ROLLGUARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rollguard}
OUT=$CACHE/argo-rollouts-$ARGO_ROLLOUTS_VERSION
say() { echo "[build-argo-rollouts] $*" >&2; }

export GOTOOLCHAIN=local CGO_ENABLED=0
if [ ! -x "$OUT/rollouts-controller" ] || [ ! -d "$OUT/crds" ]; then
  command -v go >/dev/null 2>&1 || { say "ERROR: Go is missing (needed to build Argo Rollouts $ARGO_ROLLOUTS_VERSION)"; exit 1; }
  start=$(date +%s)
  dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION" \
        | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { say "ERROR: could not download github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION"; exit 1; }
  tmp=$(mktemp -d "$CACHE/argo-rollouts.tmp.XXXX")
  trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
  cp -r "$dir" "$tmp/src" && chmod -R u+w "$tmp/src"
  say "building Argo Rollouts $ARGO_ROLLOUTS_VERSION controller; cold: about 10 min on 2 cores"
  pkg=github.com/argoproj/argo-rollouts/utils/version
  (cd "$tmp/src" && nice -n 10 go build -mod=mod -trimpath \
     -ldflags "-s -w -X $pkg.version=${ARGO_ROLLOUTS_VERSION#v} -X $pkg.gitTag=$ARGO_ROLLOUTS_VERSION" \
     -o "$tmp/rollouts-controller" ./cmd/rollouts-controller)
  mkdir -p "$OUT"
  cp -r "$tmp/src/manifests/crds" "$OUT/crds.tmp" && rm -rf "$OUT/crds" && mv "$OUT/crds.tmp" "$OUT/crds"
  mv "$tmp/rollouts-controller" "$OUT/rollouts-controller"
  say "Argo Rollouts $ARGO_ROLLOUTS_VERSION built in $(( $(date +%s) - start ))s"
fi
echo "$OUT"
