#!/usr/bin/env bash
# `make image`: builds the operator image from the Dockerfile with podman, without a Docker engine
# or a registry: the bases come from tools/image/build-base.sh (Debian's python3 via mmdebstrap).
# The image is tagged localhost/rollguard:dev and localhost/rollguard:src-<hash>, the hash covering
# the Dockerfile, the sources it copies and the bases, so an unchanged tree is not rebuilt (~0.3 s).
# IMAGE_ARCHIVE=path also writes a docker-archive (for `kind load image-archive`).
# Prints the image reference on its last line.
set -euo pipefail
say() { echo "[image] $*" >&2; }
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"

bash tools/image/install-deps.sh  # podman, buildah, mmdebstrap from Debian; nothing when present
bases=$(bash tools/image/build-base.sh | tail -1)
eval "$bases"  # BASE=... BUILDER_BASE=...

# What the build context holds (see .dockerignore): pyproject.toml, README.md and operator/.
hash=$( { echo "$bases"; cat Dockerfile .dockerignore pyproject.toml README.md;
          find operator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; } \
        | sha256sum | cut -c1-16)
IMAGE=localhost/rollguard:src-$hash
if podman image exists "$IMAGE"; then
  say "$IMAGE is up to date (Dockerfile and sources unchanged)"
else
  start=$(date +%s)
  say "building $IMAGE (podman build --isolation chroot; pip reaches PyPI)"
  # chroot isolation: RUN steps need no OCI runtime (crun refuses this kernel's hybrid cgroups and
  # podman's default rlimits exceed the hard limits here; e2e/image.py says how a container does run).
  # The host's CA bundle, as a build secret (never a layer): pip must trust the same proxies as the host.
  ca_bundle=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
  secret=()
  [ -s "$ca_bundle" ] && secret=(--secret "id=ca-bundle,src=$ca_bundle")
  podman build --isolation chroot "${secret[@]}" --layers=false --pull=never \
    --build-arg "BASE=$BASE" --build-arg "BUILDER_BASE=$BUILDER_BASE" \
    --label "io.rollguard.source-hash=$hash" -t "$IMAGE" -f Dockerfile . >&2
  say "built in $(($(date +%s) - start))s"
fi
podman tag "$IMAGE" localhost/rollguard:dev
# Older builds and bases only fill the disk (~120 MB each); one still in use by a container stays.
# (grep finds nothing when no older image is left: not a failure under pipefail.)
podman images --format '{{.Repository}}:{{.Tag}}' \
  | { grep -E '^localhost/rollguard(:src-|-base:|-builder-base:)' || true; } \
  | { grep -vxF -e "$IMAGE" -e "$BASE" -e "$BUILDER_BASE" || true; } \
  | while read -r old; do podman rmi "$old" >/dev/null 2>&1 || say "kept $old (in use)"; done
say "size: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MB", $1/1e6}')"
if [ -n "${IMAGE_ARCHIVE:-}" ]; then
  podman save --quiet --format docker-archive -o "$IMAGE_ARCHIVE" localhost/rollguard:dev
  say "saved to $IMAGE_ARCHIVE"
fi
echo "$IMAGE"
