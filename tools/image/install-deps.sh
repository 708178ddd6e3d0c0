#!/usr/bin/env bash
# What `make image` and e2e/test_image.py need from Debian: podman and buildah (build and mount
# images without a Docker engine), mmdebstrap (the local base from Debian's packages), uidmap.
set -euo pipefail
missing=()
for cmd in podman buildah mmdebstrap newuidmap runc; do command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd"); done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "[image-deps] installing Debian's podman, buildah, mmdebstrap, uidmap, runc (missing: ${missing[*]})" >&2
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
  podman buildah mmdebstrap uidmap crun runc conmon netavark aardvark-dns fuse-overlayfs golang-github-containers-common >/dev/null
