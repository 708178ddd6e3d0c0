"""Fuzzing the CRD against the real API server: what it accepts, the operator can run or explain.

Manifests come from two hypothesis strategies: values drawn from the CRD's own openAPIV3Schema,
and mutations of the examples/ manifests (boundary integers, durations Prometheus refuses, bad
quantities and label keys, value+valueFrom, dotted names...). Every one is sent with server-side
dry-run; every refusal must name the field. Every accepted one must also pass the operator's models
(one schema, two enforcers). A sample of accepted ones is applied with the operator running and must
end Ready, or Stalled with a message naming a `spec.` field, with no exception records in its log.

Quick by default (~300 dry-runs, 10 applied); `make fuzz` for the long run (ROLLGUARD_FUZZ_EXAMPLES,
default 5000 there, 1 in 100 applied); ROLLGUARD_FUZZ_SEED picks another reproducible sequence.
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections import Counter
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from e2e import md
from e2e.rollguard_process import RollguardProcess
from e2e.waiting import wait_for
from rollguard.api.spec import ModelDeploymentSpec

EXAMPLES = int(os.environ.get("ROLLGUARD_FUZZ_EXAMPLES", "300"))
SEED = int(os.environ.get("ROLLGUARD_FUZZ_SEED", "8"))  # a failure is replayed with the seed it prints
APPLIED = int(os.environ.get("ROLLGUARD_FUZZ_APPLIED", str(max(10, EXAMPLES // 100))))
# Applied manifests get a short progress deadline, so a pod that can never be ready (a nodeSelector
# no kwok node matches) ends Stalled within the test instead of after the default 600s.
APPLIED_DEADLINE_SECONDS = 15
Json = dict[str, Any]

INTS = [0, -1, 1, 2, 99, 100, 65535, 65536, 2**31 - 1, 2**31, 2**53, -(2**31) - 1]
STRINGS = [
    "", "x", "fraud.v2", "Fraud", "2fraud", "a" * 64, "1.5m", "0.5s", "0s", "1s", "100000000h", "25h", "169h",
    "30m1h", "500ms", "1h30m", "2 GB", "-1", "1e3", "500m", "1Gi", "+1", ".5", "bad key!", "nvidia.com/gpu",
    "example.com/pool", "Exists", "Equal", "NoExecute", "NoSchedule", "http", "metadata.name", "spec.nodeName",
    "limits.cpu", "v1", "169.254.169.254", "/healthz",
]  # fmt: skip
FRAGMENTS: list[tuple[str, Any]] = [
    ("env", [{"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
    ("env", [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}]),
    ("env", [{"name": "X", "valueFrom": {}}]),
    ("resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
    ("resources", {"requests": {"nvidia.com/gpu": "1"}}),
    ("resources", {"limits": {"memory": "1.5Gi", "cpu": "0.5"}}),
    ("readinessProbe", {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5}),
    ("readinessProbe", {"grpc": {"port": 9000}, "timeoutSeconds": 2**31}),
    ("livenessProbe", {"exec": {"command": ["true"]}, "successThreshold": 2}),
    ("livenessProbe", {"tcpSocket": {"port": 0}}),
    ("tolerations", [{"key": "", "operator": "Equal", "value": "x"}]),
    ("tolerations", [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 5}]),
    ("nodeSelector", {"kubernetes.io/os": "linux"}),
    ("nodeSelector", {"-bad": "x"}),
]


def _examples() -> list[Json]:
    bodies = []
    for path in sorted((md.REPO / "examples").glob("*.yaml")):
        bodies += [body for body in yaml.safe_load_all(path.read_text()) if body]
    return bodies


def _crd_spec_schema() -> Json:
    crd = yaml.safe_load((md.REPO / "crds" / "modeldeployments.rollguard.io.yaml").read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


def from_schema(node: Json) -> st.SearchStrategy[Any]:
    """Values of a structural schema node, mostly within its bounds and sometimes just outside."""
    if node.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(-1, 70000), st.sampled_from(["http", "metrics", "Bad_Port", "a" * 16]))
    kind = node.get("type")
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if kind == "string":
        if "pattern" in node:
            limit = node.get("maxLength", 64)
            return st.one_of(
                st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: len(s) <= limit),
                st.sampled_from(STRINGS),
            )
        return st.one_of(st.text(max_size=12), st.sampled_from(STRINGS))
    if kind == "integer":
        low, high = int(node.get("minimum", -(2**31))), int(node.get("maximum", 2**31 - 1))
        return st.one_of(st.integers(max(low, -1000), min(high, 1000)), st.sampled_from([low, high, low - 1, high + 1]))
    if kind == "number":
        return st.floats(-10, 10, allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(node["items"]), max_size=min(node.get("maxItems", 3), 3))
    if kind == "object" and "properties" in node:
        properties = node["properties"]
        required = set(node.get("required", []))
        return st.fixed_dictionaries(
            {key: from_schema(properties[key]) for key in sorted(required)},
            optional={key: from_schema(value) for key, value in properties.items() if key not in required},
        )
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        keys = st.sampled_from(["cpu", "memory", "gpu", "nvidia.com/gpu", "example.com/pool", "bad key!", "x"])
        return st.dictionaries(keys, from_schema(node["additionalProperties"]), max_size=3)
    return st.just({})


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in children:
        found += _paths(child, (*prefix, key))
    return found


def _schema_at(schema: Json, path: tuple[Any, ...]) -> Json | None:
    """The CRD schema node for a path in a spec (None where the path left the schema)."""
    node: Json | None = schema
    for key in path:
        if node is None:
            return None
        if isinstance(key, int):
            node = node.get("items")
        elif key in node.get("properties", {}):
            node = node["properties"][key]
        else:
            extra = node.get("additionalProperties")
            node = extra if isinstance(extra, dict) else None
    return node


OPERATIONS = ["regenerate", "regenerate", "regenerate", "set", "delete", "unknown", "fragment", "name"]


@st.composite
def mutated_example(draw: st.DrawFn, examples: list[Json], schema: Json) -> Json:
    body = copy.deepcopy(draw(st.sampled_from(examples)))
    for _ in range(draw(st.integers(1, 2))):
        paths = _paths(body["spec"])
        operation = draw(st.sampled_from(OPERATIONS))
        path = draw(st.sampled_from(paths))
        *parents, last = path
        parent: Any = body["spec"]
        for key in parents:
            parent = parent[key]
        node = _schema_at(schema, path)
        if operation == "regenerate" and node is not None:  # a new value the schema allows, mostly
            parent[last] = draw(from_schema(node))
        elif operation == "set":
            parent[last] = draw(st.one_of(st.sampled_from(INTS), st.sampled_from(STRINGS)))
        elif operation == "delete":
            del parent[last]
        elif operation == "unknown" and isinstance(parent, dict):
            parent["surprise"] = draw(st.sampled_from(STRINGS))
        elif operation == "fragment" and isinstance(body["spec"].get("runtime"), dict):
            field, value = draw(st.sampled_from(FRAGMENTS))
            body["spec"]["runtime"][field] = copy.deepcopy(value)
        elif operation == "name":
            body["metadata"]["name"] = draw(st.sampled_from([*STRINGS, "fraud-v2", "m" * 40, "m" * 41]))
    return body


def manifests(examples: list[Json]) -> st.SearchStrategy[Json]:
    schema = _crd_spec_schema()
    from_crd = from_schema(schema).map(
        lambda spec: {**copy.deepcopy(examples[0]), "metadata": {"name": "fuzzed"}, "spec": spec}
    )
    return st.one_of(mutated_example(examples, schema), mutated_example(examples, schema), from_crd)


def _send(custom: client.CustomObjectsApi, namespace: str, body: Json) -> tuple[str, str]:
    """('accepted'|'refused', message) from a server-side dry-run create; anything else fails the test."""
    try:
        custom.create_namespaced_custom_object(
            md.GROUP, md.VERSION, namespace, md.PLURAL, body, dry_run="All", field_validation="Strict"
        )
        return "accepted", ""
    except ApiException as error:
        assert error.status in (400, 422), f"the API server answered {error.status} to {body}: {error.body}"
        return "refused", str(json.loads(error.body).get("message", error.body))


def _names_a_field(message: str) -> bool:
    return "spec." in message or "metadata.name" in message or "spec:" in message


def _settled(api: client.ApiClient, namespace: str, names: list[str]) -> dict[str, tuple[str, str]]:
    """name -> (Ready | Stalled, message) for every object that has settled."""
    settled = {}
    for name in names:
        conditions = {c["type"]: c for c in md.status(api, namespace, name).get("conditions", [])}
        if conditions.get("Ready", {}).get("status") == "True":
            settled[name] = ("Ready", conditions["Ready"].get("message", ""))
        elif conditions.get("Stalled", {}).get("status") == "True":
            settled[name] = ("Stalled", conditions["Stalled"].get("message", ""))
    return settled


def test_fuzzed_manifests_are_refused_naming_the_field_or_run_or_stall(
    control_plane: Any, kube_api: client.ApiClient, namespace: str, rollguard: RollguardProcess
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    examples = _examples()
    counts: Counter[str] = Counter()
    accepted: list[Json] = []
    vague: list[str] = []
    disagreements: list[str] = []

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(manifests(examples))
    def send(body: Json) -> None:
        counts["sent"] += 1
        outcome, message = _send(custom, namespace, body)
        counts[outcome] += 1
        if outcome == "refused" and not _names_a_field(message):
            vague.append(message)
        if outcome == "accepted":
            accepted.append(body)
            try:
                ModelDeploymentSpec.model_validate(body["spec"])
            except ValidationError as error:
                disagreements.append(f"{json.dumps(body['spec'])}: {error}")

    send()
    sample = random.Random(8).sample(accepted, min(APPLIED, len(accepted)))
    names = []
    applied_specs: dict[str, Json] = {}
    for index, chosen in enumerate(sample):
        body = copy.deepcopy(chosen)
        body["metadata"] = {"name": f"fuzz-{index}"}
        body["spec"]["progressDeadlineSeconds"] = APPLIED_DEADLINE_SECONDS
        body["spec"]["replicas"] = min(int(body["spec"].get("replicas", 1)), 3)
        if "autoscaling" in body["spec"]:
            body["spec"]["autoscaling"] = {**body["spec"]["autoscaling"], "minReplicas": 1}
        custom.create_namespaced_custom_object(md.GROUP, md.VERSION, namespace, md.PLURAL, body)
        names.append(body["metadata"]["name"])
        applied_specs[body["metadata"]["name"]] = body["spec"]
    counts["applied"] = len(names)
    print(f"\nfuzz: {dict(counts)} (seed {SEED})")
    try:
        settled = wait_for(
            lambda: _settled(kube_api, namespace, names),
            APPLIED_DEADLINE_SECONDS + 60,
            message="every applied manifest Ready or Stalled",
            until=lambda found: len(found) == len(names),
        )
    except AssertionError:
        found = _settled(kube_api, namespace, names)
        pending = [name for name in names if name not in found]
        raise AssertionError(
            f"{len(pending)} of {len(names)} applied manifests neither Ready nor Stalled:\n"
            + "\n".join(
                f"{name}: {md.status(kube_api, namespace, name).get('message')!r}\n"
                f"  spec: {json.dumps(applied_specs[name])}"
                for name in pending
            )
        ) from None
    counts.update(f"ended {state}" for state, _ in settled.values())
    print(f"fuzz: {dict(counts)}")
    print("\n".join(f"fuzz: {name} {state}: {message[:160]}" for name, (state, message) in sorted(settled.items())))
    unexplained = {
        name: message for name, (state, message) in settled.items() if state == "Stalled" and "spec." not in message
    }
    exceptions = [r for r in rollguard.logs() if r.get("exception") or r.get("exc_info")]
    assert counts["accepted"] and counts["refused"], f"the fuzzer should produce both outcomes: {dict(counts)}"
    assert not vague, f"{len(vague)} refusals do not name the field, e.g. {vague[:3]}"
    assert not disagreements, (
        f"{len(disagreements)} accepted by the API server, refused by the models: {disagreements[:2]}"
    )
    assert not unexplained, "Stalled without naming a spec. field:\n" + "\n".join(
        f"{name}: {message}\n  spec: {json.dumps(applied_specs[name])}" for name, message in unexplained.items()
    )
    assert not exceptions, f"{len(exceptions)} exception records in the operator log, e.g. {exceptions[:2]}"
