"""Generates the ModelDeployment CRD from the pydantic models: `python -m rollguard.api.crdgen`.

Kubernetes wants a structural schema: no $ref, no anyOf-with-null, no titles; so the generator
inlines definitions, turns optional fields into plain optional properties, and keeps CEL rules.
Defaults are dropped on purpose: the operator applies them, so the stored object stays exactly
as the user (or their GitOps tool) wrote it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from rollguard.api.spec import ModelDeploymentSpec
from rollguard.api.status import ModelDeploymentStatus
from rollguard.core import naming

CRD_PATH = Path(__file__).resolve().parents[3] / "crds" / f"{naming.PLURAL}.{naming.GROUP}.yaml"
_DROP = {"title", "default", "$defs", "propertyNames"}  # map keys are checked by CEL (spec.map_keys)
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"  # DNS-1035: what a Service name must be


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            return _structural({**options[0], **rest}, defs)
        return _structural({**rest, "x-kubernetes-int-or-string": True}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _structural(schema, defs) for name, schema in value.items()}
        elif key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "additionalProperties" and value is False:
            continue
        elif key == "patternProperties":  # a map with constrained keys: the keys are CEL-checked (spec.map_keys)
            (value_schema,) = value.values()
            out["additionalProperties"] = _structural(value_schema, defs)
        else:
            out[key] = _structural(value, defs)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for bound, exclusive in (("maximum", "exclusiveMaximum"), ("minimum", "exclusiveMinimum")):
        if isinstance(out.get(exclusive), (int, float)) and not isinstance(out[exclusive], bool):
            out[bound], out[exclusive] = out[exclusive], True  # OpenAPI v3.0 form, as Kubernetes wants
    return out


def schema_of(model: type[Any], mode: str) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode=mode)
    return dict(_structural(raw, raw.get("$defs", {})))


def build_crd() -> dict[str, Any]:
    spec_schema = schema_of(ModelDeploymentSpec, "validation")
    status_schema = schema_of(ModelDeploymentStatus, "serialization")
    status_schema.pop("required", None)
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.metadata.name.size() <= 40",
                "message": "metadata.name must be at most 40 characters (child names append a revision hash)",
            },
            {
                "rule": f"self.metadata.name.matches(r'{NAME_PATTERN}')",
                "message": "metadata.name must be a DNS-1035 label: lowercase letters, digits and '-', starting with "
                "a letter, no dots (it names the Services, e.g. fraud-v2 rather than fraud.v2)",
            },
        ],
    }
    printer_columns = [
        {"name": "Version", "type": "string", "jsonPath": ".spec.model.version", "description": "Requested version"},
        {"name": "Serving", "type": "string", "jsonPath": ".status.servingVersion", "description": "Known-good"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Canary%", "type": "integer", "jsonPath": ".status.canaryWeight"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas", "priority": 1},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{naming.PLURAL}.{naming.GROUP}",
            "labels": {"app.kubernetes.io/name": "rollguard", "app.kubernetes.io/part-of": "rollguard"},
        },
        "spec": {
            "group": naming.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": naming.KIND,
                "listKind": f"{naming.KIND}List",
                "plural": naming.PLURAL,
                "singular": "modeldeployment",
                "shortNames": ["md", "mdep"],
                "categories": ["rollguard", "ml"],
            },
            "versions": [
                {
                    "name": naming.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": printer_columns,
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `make crds` (python -m rollguard.api.crdgen) from operator/rollguard/api. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


def main() -> int:
    text = render()
    chart_copy = CRD_PATH.parents[1] / "charts" / "rollguard" / "crds" / CRD_PATH.name  # Helm installs crds/
    for path in (CRD_PATH, chart_copy):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
