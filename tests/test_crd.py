"""The committed CRD is the one the models generate, and Kubernetes will accept its schema."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollguard.api import crdgen

FORBIDDEN_KEYS = ("$ref", "anyOf", "oneOf", "allOf", "title", "default", "uniqueItems", "$defs", "const")
Node = dict[str, Any]


@pytest.fixture(scope="module")
def crd() -> Node:
    return dict(yaml.safe_load(crdgen.CRD_PATH.read_text()))


@pytest.fixture(scope="module")
def version(crd: Node) -> Node:
    versions = crd["spec"]["versions"]
    assert len(versions) == 1, f"expected one served version, got {[v['name'] for v in versions]}"
    return dict(versions[0])


@pytest.fixture(scope="module")
def schema(version: Node) -> Node:
    return dict(version["schema"]["openAPIV3Schema"])


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every schema node with its path, descending only through schema-valued keywords."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{*}}")


def all_keys(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every mapping key anywhere in the document, including inside descriptions' siblings."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key
            # Property names are data, not keywords: a field called `default` would be fine.
            if key == "properties":
                for name, child in value.items():
                    yield from all_keys(child, f"{path}.{name}")
            else:
                yield from all_keys(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from all_keys(item, f"{path}[{index}]")


CHART_COPY = crdgen.CRD_PATH.parents[1] / "charts" / "rollguard" / "crds" / crdgen.CRD_PATH.name


@pytest.mark.parametrize("path", [crdgen.CRD_PATH, CHART_COPY], ids=["crds", "chart-crds"])
def test_committed_crd_is_what_the_models_generate(path: Path) -> None:
    if path == CHART_COPY and not path.parent.parent.exists():
        pytest.skip("no Helm chart in this checkout")
    assert path.exists(), f"{path} is missing; run `make crds`"
    committed = path.read_text()
    generated = crdgen.render()
    if committed != generated:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                generated.splitlines(keepends=True),
                fromfile=f"{path} (committed)",
                tofile="generated from operator/rollguard/api",
            )
        )
        pytest.fail(f"{path} is out of date with the API models; run `make crds` and commit it.\n{diff}", pytrace=False)


def test_crd_is_named_for_its_group_and_plural(crd: Node) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1", f"got {crd['apiVersion']}"
    assert crd["metadata"]["name"] == "modeldeployments.rollguard.io", f"got {crd['metadata']['name']}"
    assert crd["spec"]["scope"] == "Namespaced", "a ModelDeployment should be namespaced"


@pytest.mark.parametrize("forbidden", FORBIDDEN_KEYS)
def test_schema_has_no_non_structural_keyword(schema: Node, forbidden: str) -> None:
    found = [path or "<root>" for path, key in all_keys(schema) if key == forbidden]
    assert not found, f"a structural schema must not contain {forbidden!r}; found at {found[:5]}"


def test_every_object_declares_its_fields_or_preserves_unknown_ones(schema: Node) -> None:
    loose = [
        path
        for path, node in walk(schema)
        if node.get("type") == "object"
        and path != ".metadata"  # the API server owns metadata's schema
        and "properties" not in node
        and not isinstance(node.get("additionalProperties"), dict)  # a map with typed values
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert not loose, f"objects with neither properties nor x-kubernetes-preserve-unknown-fields: {loose}"


def test_every_node_has_a_type(schema: Node) -> None:
    untyped = [
        path or "<root>"
        for path, node in walk(schema)
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    assert not untyped, f"a structural schema needs a type on every node; missing at {untyped}"


def test_user_facing_fields_are_validated_by_the_schema(schema: Node) -> None:
    spec = schema["properties"]["spec"]
    assert set(spec["required"]) == {"model", "runtime"}, f"spec should require model and runtime: {spec['required']}"
    model = spec["properties"]["model"]["properties"]
    assert model["uri"]["pattern"].startswith("^(s3|gs|"), f"model.uri should be pattern-checked: {model['uri']}"
    steps = spec["properties"]["strategy"]["properties"]["canary"]["properties"]["steps"]
    weight = steps["items"]["properties"]["weight"]
    assert (weight["minimum"], weight["maximum"]) == (1, 99), f"step weights should be 1..99: {weight}"
    strategy_type = spec["properties"]["strategy"]["properties"]["type"]
    assert strategy_type["enum"] == ["Canary", "Rolling"], f"strategy.type should be an enum: {strategy_type}"


def test_status_never_requires_fields(schema: Node) -> None:
    assert "required" not in schema["properties"]["status"], "the operator writes status incrementally"


def cel_rules(schema: Node) -> Iterator[tuple[str, Node, str]]:
    for path, node in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            yield path or "<root>", node, rule["rule"]


def test_cel_rules_exist_for_cross_field_constraints(schema: Node) -> None:
    rules = {rule for _, _, rule in cel_rules(schema)}
    for expected in ("self.minReplicas <= self.maxReplicas", "has(self.template) != has(self.query)"):
        assert expected in rules, f"expected the CEL rule {expected!r} in the CRD, got {sorted(rules)}"
    assert all(isinstance(rule, str) and rule for rule in rules), "every CEL rule should be a non-empty string"


def test_cel_rules_read_optional_fields_only_after_has(schema: Node) -> None:
    """Defaults are not in the CRD, so an omitted optional field is absent at admission: reading
    `self.field` without `has(self.field)` is a CEL 'no such key' error, which rejects the object."""
    unguarded = []
    for path, node, rule in cel_rules(schema):
        required = set(node.get("required", [])) | ({"metadata"} if path == "<root>" else set())
        read = set(re.findall(r"(?<!has\()self\.(\w+)\b(?!\()", rule))  # self.all(...) is a call, not a read
        guarded = set(re.findall(r"has\(self\.(\w+)\)", rule))
        unguarded += [f"{path}: {rule!r} reads self.{f}" for f in sorted(read - required - guarded)]
    assert not unguarded, "CEL rules read optional fields without has():\n" + "\n".join(unguarded)


def test_status_and_scale_subresources(version: Node) -> None:
    subresources = version["subresources"]
    assert subresources.get("status") == {}, f"status should be a subresource: {subresources}"
    assert subresources.get("scale") == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }, f"scale subresource (kubectl scale, HPA on the MD) should map replicas and selector: {subresources}"


def test_printer_columns_show_version_phase_and_readiness(version: Node) -> None:
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    expected = {
        "Version": ".spec.model.version",
        "Serving": ".status.servingVersion",
        "Phase": ".status.phase",
        "Canary%": ".status.canaryWeight",
        "Ready": ".status.conditions[?(@.type=='Ready')].status",
        "Age": ".metadata.creationTimestamp",
    }
    for name, path in expected.items():
        assert columns.get(name) == path, f"printer column {name} should show {path}, got {columns.get(name)}"


def test_printer_columns_point_at_fields_the_schema_has(schema: Node, version: Node) -> None:
    for column in version["additionalPrinterColumns"]:
        parts = column["jsonPath"].lstrip(".").split("[")[0].split(".")
        if parts[0] == "metadata":
            continue
        node = schema
        for part in parts:
            assert part in node.get("properties", {}), (
                f"column {column['name']}: {column['jsonPath']} is not in the schema"
            )
            node = node["properties"][part]


def test_short_names_and_categories(crd: Node) -> None:
    names = crd["spec"]["names"]
    assert names["kind"] == "ModelDeployment", f"kind: {names['kind']}"
    assert {"md", "mdep"} <= set(names["shortNames"]), f"`kubectl get md` should work, short names: {names}"
    assert "rollguard" in names["categories"], f"`kubectl get rollguard` should list it, categories: {names}"
