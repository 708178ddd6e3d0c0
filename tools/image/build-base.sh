#!/usr/bin/env bash
# Builds the two local base images the Dockerfile's `ARG BASE` / `ARG BUILDER_BASE` point at when no
# public image registry is reachable: Debian bookworm's own python3 (3.11, /usr/bin/python3), made by
# mmdebstrap from Debian's packages and imported into podman's local storage.
#   localhost/rollguard-base:<key>          runtime: python3 and the libraries it links, unpacked
#                                           (variant extract): no shell, no apt, no dpkg scripts
#   localhost/rollguard-builder-base:<key>  builder: Debian's essential set, python3 and python3-venv
# <key> hashes this script, so the bases are built once and reused (a cached run takes ~0.1 s).
# Prints "BASE=... BUILDER_BASE=..." on its last line.
set -euo pipefail
say() { echo "[build-base] $*" >&2; }

SUITE=${ROLLGUARD_BASE_SUITE:-bookworm}
key=$(sha256sum "$0" | cut -c1-12)
BASE=localhost/rollguard-base:$SUITE-$key
BUILDER_BASE=localhost/rollguard-builder-base:$SUITE-$key

# Documentation, man pages and translations are dead weight in an image nobody logs into.
common=(--quiet)
for dir in doc man locale info lintian; do common+=("--dpkgopt=path-exclude=/usr/share/$dir/*"); done

# The runtime tree is unpacked, not installed, so do what python3's postinst would (byte-compile
# the stdlib; the image's root filesystem is read-only) and give uid 65532 a name and a /tmp.
# (extract runs no customize hooks: these are extract hooks, run once everything is unpacked.)
# shellcheck disable=SC2016  # single quotes on purpose: mmdebstrap passes the root as $1
runtime_hooks=(
  --extract-hook='chroot "$1" /usr/bin/python3 -m compileall -q /usr/lib/python3.11 >/dev/null'
  --extract-hook='printf "root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n" >"$1/etc/passwd"'
  --extract-hook='printf "root:x:0:\nnonroot:x:65532:\n" >"$1/etc/group"'
  --extract-hook='mkdir -p "$1/home/nonroot" && chown 65532:65532 "$1/home/nonroot" && chmod 1777 "$1/tmp"'
  --extract-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/usr/lib/*/gconv'
)
# usr-is-merged satisfies init-system-helpers on this already merged-/usr tree; the essential phase
# still picks usrmerge, which pulls in perl: purge it again (the builder stage is thrown away anyway).
# shellcheck disable=SC2016  # as above
builder_hooks=(
  --customize-hook='chroot "$1" dpkg --purge usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl >/dev/null'
  --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/*'
)

build() { # image-name mmdebstrap-args...
  local image=$1 tmp start
  shift
  if podman image exists "$image"; then return 0; fi
  start=$(date +%s)
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: tmp is local
  trap "rm -rf '$tmp'" RETURN
  say "building $image from Debian $SUITE packages (mmdebstrap, ~1 min)"
  mmdebstrap "${common[@]}" "$@" "$SUITE" "$tmp/rootfs.tar" >&2
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/usr/bin/python3"]' \
    "$tmp/rootfs.tar" "$image" >/dev/null
  say "$image built in $(($(date +%s) - start))s"
}

if ! command -v mmdebstrap >/dev/null || ! command -v podman >/dev/null; then
  say "ERROR: mmdebstrap and podman are missing: run tools/image/install-deps.sh"
  exit 1
fi
build "$BASE" --variant=extract --include=python3,netbase "${runtime_hooks[@]}"
build "$BUILDER_BASE" --variant=essential --include=python3,python3-venv,usr-is-merged "${builder_hooks[@]}"
echo "BASE=$BASE BUILDER_BASE=$BUILDER_BASE"
