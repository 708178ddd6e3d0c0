#!/usr/bin/env bash
# Installs the real model servers the e2e tests run (MLServer + mlserver-sklearn + scikit-learn,
# from PyPI) into their own venv under $ROLLGUARD_CACHE_DIR, never into the project's venv:
# MLServer pins its own fastapi/uvicorn/prometheus-client versions.
#   bash e2e/install-model-servers.sh [PYTHON]      # prints the venv's python on stdout
set -euo pipefail
MLSERVER_VERSION=1.7.1
python="${1:-}"
if [ -z "$python" ]; then  # MLServer 1.7.1 supports Python 3.9 to 3.12
  for candidate in python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
  [ -n "$python" ] || { echo "[install-model-servers] ERROR: MLServer $MLSERVER_VERSION needs Python 3.9-3.12" >&2; exit 1; }
fi
cache="${ROLLGUARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rollguard}"
venv="$cache/mlserver-$MLSERVER_VERSION"
if [ ! -f "$venv/.complete" ]; then
  echo "[install-model-servers] installing mlserver==$MLSERVER_VERSION into $venv (first use, ~1-2 min)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q "mlserver==$MLSERVER_VERSION" "mlserver-sklearn==$MLSERVER_VERSION" scikit-learn >&2
  touch "$venv/.complete"  # only a finished install counts: a broken one is redone
fi
echo "$venv/bin/python"
