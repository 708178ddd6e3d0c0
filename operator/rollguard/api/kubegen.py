"""Extracts the embedded Kubernetes types from the pinned Kubernetes OpenAPI into kube_schemas.json.

    python -m rollguard.api.kubegen [OPENAPI_V3_DIR]

OPENAPI_V3_DIR defaults to `$(go env GOMODCACHE)/k8s.io/kubernetes@<KUBE_VERSION>/api/openapi-spec/v3`,
which e2e/build-control-plane.sh downloads. The output is committed and reviewed like code: crdgen
inlines it into the CRD and api/kubetypes.py validates the same schema in the operator.

The OpenAPI carries structure and types only; the limits Kubernetes enforces in Go
(pkg/apis/core/validation/validation.go: validateProbe, validateHandler, ValidateEnvVarSource,
ValidateTolerations, ValidateResourceRequirements) are added here as LIMITS and RULES, with the
bounds and string lengths a CRD needs so the API server's CEL cost estimate passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

KUBE_VERSION = "v1.36.3"  # the version e2e/build-control-plane.sh builds
OUT_PATH = Path(__file__).with_name("kube_schemas.json")
CORE = "io.k8s.api.core.v1."
INT32_MAX = 2**31 - 1

# RE2-compatible (the API server) and Python-compatible (the operator) patterns.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
# apimachinery resource.Quantity, without a sign (no resource or divisor may be negative) and with an
# exponent of at most two digits: quantity('.6e-6000943260064') in CEL kept the API server busy until
# its 60s timeout (found by e2e/test_fuzz.py); no resource needs more than e18.
QUANTITY = r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]{1,2}))?$"
HTTP_HEADER_NAME = r"^[-A-Za-z0-9!#$%&'*+.^_`|~]+$"
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"
FIELD_PATH = (
    r"^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['[-A-Za-z0-9_./]{1,317}'\]"
    r"|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$"
)
CONTAINER_RESOURCE = r"^(limits|requests)\.(cpu|memory|ephemeral-storage)$"

ROOTS = {
    "Probe": CORE + "Probe",
    "EnvVarSource": CORE + "EnvVarSource",
    "Toleration": CORE + "Toleration",
    "Quantity": "io.k8s.apimachinery.pkg.api.resource.Quantity",
}
# Feature-gated (off by default in the pinned version), so the API server would drop or refuse them.
DROP = {CORE + "EnvVarSource": {"fileKeyRef"}}
REQUIRED = {CORE + "ConfigMapKeySelector": ["key", "name"], CORE + "SecretKeySelector": ["key", "name"]}

_PORT = {"x-kubernetes-int-or-string": True, "maxLength": 15}
_COUNT = {"minimum": 0, "maximum": INT32_MAX}
LIMITS: dict[str, dict[str, dict[str, Any]]] = {
    CORE + "Probe": {
        "initialDelaySeconds": _COUNT,
        "timeoutSeconds": _COUNT,
        "periodSeconds": _COUNT,
        "successThreshold": _COUNT,
        "failureThreshold": _COUNT,
        "terminationGracePeriodSeconds": {"minimum": 1, "maximum": INT32_MAX},
    },
    CORE + "HTTPGetAction": {
        "port": _PORT,
        "host": {"maxLength": 253},
        "path": {"maxLength": 2048},
        "scheme": {"enum": ["HTTP", "HTTPS"]},
        "httpHeaders": {"maxItems": 32},
    },
    CORE + "HTTPHeader": {"name": {"pattern": HTTP_HEADER_NAME, "maxLength": 256}, "value": {"maxLength": 4096}},
    CORE + "TCPSocketAction": {"port": _PORT, "host": {"maxLength": 253}},
    CORE + "GRPCAction": {"port": {"minimum": 1, "maximum": 65535}, "service": {"maxLength": 253}},
    CORE + "ExecAction": {"command": {"maxItems": 64, "items": {"maxLength": 4096}}},
    CORE + "ConfigMapKeySelector": {
        "key": {"pattern": CONFIG_KEY, "maxLength": 253},
        "name": {"pattern": DNS_SUBDOMAIN, "maxLength": 253},
    },
    CORE + "SecretKeySelector": {
        "key": {"pattern": CONFIG_KEY, "maxLength": 253},
        "name": {"pattern": DNS_SUBDOMAIN, "maxLength": 253},
    },
    CORE + "ObjectFieldSelector": {
        "apiVersion": {"enum": ["v1"]},
        "fieldPath": {"pattern": FIELD_PATH, "maxLength": 400},
    },
    CORE + "ResourceFieldSelector": {
        "containerName": {"maxLength": 63},
        "resource": {"pattern": CONTAINER_RESOURCE, "maxLength": 32},
    },
    CORE + "Toleration": {
        "key": {"pattern": QUALIFIED_NAME, "maxLength": 317},
        # Lt and Gt need the TaintTolerationComparisonOperators feature gate, off by default.
        "operator": {"enum": ["Equal", "Exists"]},
        "value": {"pattern": LABEL_VALUE, "maxLength": 63},
        "effect": {"enum": ["", "NoSchedule", "PreferNoSchedule", "NoExecute"]},
        "tolerationSeconds": {"minimum": -INT32_MAX - 1, "maximum": INT32_MAX},
    },
}
_PORT_RULE = {
    "rule": "type(self) == int ? (self >= 1 && self <= 65535) : self.matches('^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$')",
    "message": "port must be a number 1..65535 or a port name (IANA_SVC_NAME, e.g. http)",
}
RULES: dict[str, list[dict[str, str]]] = {
    CORE + "Probe": [
        {
            "rule": "[has(self.exec), has(self.httpGet), has(self.tcpSocket), has(self.grpc)].filter(x, x).size() == 1",
            "message": "a probe needs exactly one of exec, httpGet, tcpSocket or grpc",
        }
    ],
    CORE + "EnvVarSource": [
        {
            "rule": "[has(self.configMapKeyRef), has(self.fieldRef), has(self.resourceFieldRef), "
            "has(self.secretKeyRef)].filter(x, x).size() == 1",
            "message": "valueFrom needs exactly one of configMapKeyRef, fieldRef, resourceFieldRef or secretKeyRef",
        }
    ],
    CORE + "Toleration": [
        {
            "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "message": "value must be empty when operator is Exists",
        },
        {
            "rule": "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
            "message": "operator must be Exists when key is empty",
        },
        {
            "rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "message": "tolerationSeconds is only allowed with effect NoExecute",
        },
    ],
}
PORT_RULES = {CORE + "HTTPGetAction": "port", CORE + "TCPSocketAction": "port"}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and key in merged else value
    return merged


def _convert(node: dict[str, Any], schemas: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """One OpenAPI node as a structural CRD schema: refs inlined, defaults dropped, limits added."""
    refs = [node["$ref"]] if "$ref" in node else [part["$ref"] for part in node.get("allOf", []) if "$ref" in part]
    if refs:
        target = refs[0].split("/")[-1]
        out = _convert(schemas[target], schemas, target)
        if "description" in node:
            out["description"] = _first_line(node)
        return out
    if name == ROOTS["Quantity"]:
        # Strings only (write "1", not 1): one shape for the operator and for CEL's quantity().
        return {"type": "string", "pattern": QUANTITY, "maxLength": 64, "description": _first_line(node)}
    if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
        return {"x-kubernetes-int-or-string": True}
    out = {key: value for key, value in node.items() if key in ("type", "description", "format", "required")}
    if "description" in out:
        out["description"] = _first_line(node)
    if out.get("format") == "int32":
        out.update(minimum=-INT32_MAX - 1, maximum=INT32_MAX)
    if "items" in node:
        out["items"] = _convert(node["items"], schemas)
        out.setdefault("maxItems", 64)
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _convert(node["additionalProperties"], schemas)
    if "properties" in node:
        dropped = DROP.get(name or "", set())
        limits = LIMITS.get(name or "", {})
        out["properties"] = {
            field: _merge(_convert(schema, schemas), limits.get(field, {}))
            for field, schema in sorted(node["properties"].items())
            if field not in dropped
        }
        for field, schema in out["properties"].items():
            if field == PORT_RULES.get(name or ""):
                schema["x-kubernetes-validations"] = [_PORT_RULE]
    if name in REQUIRED:
        out["required"] = REQUIRED[name]
    if out.get("type") == "string" and "enum" not in out:
        out.setdefault("maxLength", 1024)
    if name in RULES:
        out["x-kubernetes-validations"] = RULES[name]
    return out


def _first_line(node: dict[str, Any]) -> str:
    """The first paragraph of the upstream description, enough for `kubectl explain`."""
    return str(node.get("description", "")).split("\n\n")[0].strip()


def default_openapi_dir() -> Path:
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    return Path(modcache) / f"k8s.io/kubernetes@{KUBE_VERSION}" / "api" / "openapi-spec" / "v3"


def extract(openapi_dir: Path) -> dict[str, Any]:
    schemas = json.loads((openapi_dir / "api__v1_openapi.json").read_text())["components"]["schemas"]
    return {
        "source": f"k8s.io/kubernetes@{KUBE_VERSION} api/openapi-spec/v3/api__v1_openapi.json",
        "generator": "python -m rollguard.api.kubegen",
        "schemas": {short: _convert(schemas[full], schemas, full) for short, full in ROOTS.items()},
    }


def main(argv: list[str]) -> int:
    openapi_dir = Path(argv[0]) if argv else default_openapi_dir()
    OUT_PATH.write_text(json.dumps(extract(openapi_dir), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT_PATH} from {openapi_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
