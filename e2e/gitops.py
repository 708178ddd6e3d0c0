"""The GitOps tools' own health code, run on live objects: Argo CD's Lua check and Flux's kstatus.

* ``argocd_health(obj)`` runs ``charts/rollguard/files/argocd-health.lua`` in Lua 5.1 (lupa), the
  dialect of gopher-lua that Argo CD embeds, with ``obj`` bound the way Argo CD binds it.
* ``kstatus(objs)`` pipes the objects to ``tools/kstatus`` (sigs.k8s.io/cli-utils' kstatus, the
  library Flux's kustomize-controller and helm-controller compute health with), built from its Go
  module and cached by ``tools/build-go-tools.sh``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from e2e.binaries import cache_dir

REPO = Path(__file__).resolve().parents[1]
ARGOCD_HEALTH_LUA = REPO / "charts" / "rollguard" / "files" / "argocd-health.lua"
BUILD_GO_TOOLS = REPO / "tools" / "build-go-tools.sh"


def _to_lua(lua: Any, value: Any) -> Any:
    """JSON -> Lua tables as Argo CD's luajson does: objects keyed by name, arrays from index 1."""
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def argocd_health(obj: dict[str, Any], script: Path = ARGOCD_HEALTH_LUA) -> dict[str, str]:
    """{"status": ..., "message": ...} as Argo CD would compute it for ``obj``."""
    import lupa.lua51  # noqa: PLC0415 - a dev dependency, only needed here

    lua = lupa.lua51.LuaRuntime(unpack_returned_tuples=False)
    lua.globals().obj = _to_lua(lua, json.loads(json.dumps(obj)))
    # Argo CD runs the script as a chunk and reads the table it returns.
    result = lua.execute(script.read_text())
    if result is None:
        raise AssertionError(f"{script} returned nothing for {obj['metadata'].get('name')}")
    return {"status": str(result["status"]), "message": str(result["message"] or "")}


def build_tool(name: str) -> Path:
    """Path of a cached Go tool (kstatus, actionlint), built from its module on first use."""
    env = {**os.environ, "ROLLGUARD_CACHE_DIR": str(cache_dir())}
    built = subprocess.run(
        ["bash", str(BUILD_GO_TOOLS), name], capture_output=True, text=True, env=env, timeout=900, check=False
    )
    if built.returncode != 0:
        raise RuntimeError(
            f"{BUILD_GO_TOOLS} {name} failed ({built.returncode}); it needs Go >= 1.26 and the Go module "
            f"proxy. Its output ends with:\n{built.stderr[-2000:]}"
        )
    return Path(built.stdout.strip().splitlines()[-1])


def kstatus(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """{name: {"status": Current|InProgress|Failed|..., "message": ...}} as kstatus computes them."""
    binary = build_tool("kstatus")
    doc = {"apiVersion": "v1", "kind": "List", "items": objects}
    computed = subprocess.run(
        [str(binary)], input=json.dumps(doc), capture_output=True, text=True, timeout=60, check=False
    )
    assert computed.returncode == 0, f"kstatus failed: {computed.stderr}"
    lines = [json.loads(line) for line in computed.stdout.splitlines() if line]
    return {line["name"]: {"status": line["status"], "message": line["message"]} for line in lines}
