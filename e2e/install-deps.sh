#!/usr/bin/env bash
# Installs what the harness needs beyond Python: Debian's Prometheus (and promtool).
# Go (>= 1.26) must already be installed; the control plane is built from Go modules by
# e2e/build-control-plane.sh.
set -euo pipefail
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "[install-deps] installing Debian's prometheus package" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package starts a system Prometheus on :9090; the harness runs its own on a free port.
  $sudo_cmd systemctl stop prometheus >/dev/null 2>&1 || $sudo_cmd service prometheus stop >/dev/null 2>&1 || true
fi
# podman, buildah and mmdebstrap: the operator image is built and run by e2e/test_image.py.
bash "$(dirname "$0")/../tools/image/install-deps.sh"
# shellcheck: actionlint (make lint) checks the release workflow's shell steps with it.
if ! command -v shellcheck >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi
command -v go >/dev/null 2>&1 || { echo "[install-deps] ERROR: Go >= 1.26 is missing (needed to build the control plane)" >&2; exit 1; }
# The real model server e2e/test_real_server.py runs (MLServer from PyPI), in its own cached venv.
bash "$(dirname "$0")/install-model-servers.sh" >/dev/null
