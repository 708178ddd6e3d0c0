#!/usr/bin/env bash
# Builds Prometheus and promtool with Kubernetes service discovery from the Go module proxy:
# Debian's prometheus package is built without kubernetes_sd, and the scrape contract's example
# (examples/scrape/prometheus-kubernetes-sd.yaml) is tested against the test apiserver with it.
#   bash e2e/build-prometheus-k8s-sd.sh      # prints the bin directory; cached, ~0.1 s when built
set -euo pipefail
PROMETHEUS_MODULE_VERSION=v0.316.0   # Prometheus 3.16.0
cache="${ROLLGUARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rollguard}"
bin="$cache/prometheus-k8s-sd-$PROMETHEUS_MODULE_VERSION/bin"
if [ ! -x "$bin/prometheus" ] || [ ! -x "$bin/promtool" ]; then
  command -v go >/dev/null 2>&1 || { echo "[build-prometheus] ERROR: Go >= 1.26 is missing" >&2; exit 1; }
  echo "[build-prometheus] building prometheus and promtool $PROMETHEUS_MODULE_VERSION with only file, static, http and kubernetes discovery (cold: several minutes)" >&2
  mkdir -p "$bin.tmp"
  GOBIN="$bin.tmp" GOFLAGS=-mod=mod go install -tags remove_all_sd,enable_kubernetes_sd \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" >&2
  rm -rf "$bin" && mv "$bin.tmp" "$bin"   # only a finished build counts
fi
echo "$bin"
